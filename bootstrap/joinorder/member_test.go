package joinorder

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/ksboot/ksboot/cluster"
	"github.com/ksboot/ksboot/test/apiserver"
	"github.com/ksboot/ksboot/test/k8sbin"
)

// TestStrandedUnit: the member list decides. Started members have a name; an unstarted one
// does not, and its entry in the initial cluster takes this node's name; learners do not count
// toward the quorum.
func TestStrandedUnit(t *testing.T) {
	self := "https://192.168.0.12:2380"
	for _, tc := range []struct {
		name      string
		members   []member
		want      string // InitialCluster; "" for none found
		removable bool
	}{
		{"none", []member{{id: 1, name: "node1", peerURLs: []string{"https://192.168.0.11:2380"}}}, "", false},
		{"started", []member{{id: 1, name: "node1", peerURLs: []string{"https://192.168.0.11:2380"}}, {id: 2, name: "node2", peerURLs: []string{self}}}, "", false},
		{"second of two", []member{{id: 1, name: "node1", peerURLs: []string{"https://192.168.0.11:2380"}}, {id: 2, peerURLs: []string{self}}},
			"node1=https://192.168.0.11:2380,node2=" + self, false},
		{"third of three", []member{{id: 1, name: "node1", peerURLs: []string{"https://192.168.0.11:2380"}}, {id: 0x2a, peerURLs: []string{"https://192.168.0.13:2380"}},
			{id: 3, name: "node3", peerURLs: []string{"https://192.168.0.14:2380"}}, {id: 4, peerURLs: []string{self}}},
			"node1=https://192.168.0.11:2380,2a=https://192.168.0.13:2380,node3=https://192.168.0.14:2380,node2=" + self, false},
		{"learner", []member{{id: 1, name: "node1", peerURLs: []string{"https://192.168.0.11:2380"}}, {id: 2, peerURLs: []string{self}, learner: true}},
			"node1=https://192.168.0.11:2380,node2=" + self, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := stranded(tc.members, "node2", self)
			if tc.want == "" {
				if s != nil {
					t.Fatalf("found %+v", s)
				}
				return
			}
			if s == nil || s.InitialCluster != tc.want || s.Removable() != tc.removable {
				t.Fatalf("got %+v (removable %v), want %s removable %v", s, s != nil && s.Removable(), tc.want, tc.removable)
			}
		})
	}
}

// TestStrandedAgainstEtcd: with a real etcd (the harness's, standing in for node1's), a voting
// member added for node2 and never started takes the quorum away. Stranded finds it through
// node1's address and says it cannot be removed; an etcd started with its InitialCluster and
// state existing brings the quorum back and is no longer stranded. A member then added for
// node3 and never started leaves node1 and node2 a quorum: it is removable, and RemoveMember
// removes it.
func TestStrandedAgainstEtcd(t *testing.T) {
	s := apiserver.Start(t)
	ctx := context.Background()
	c := haCluster()
	l := &loopback{to: map[string]string{"192.168.0.11:2379": hostPort(t, s.EtcdURL)}, closed: closedPort(t)}
	options := func(node string) Options {
		nc, err := cluster.NodeConfigFor(c, s.Secrets, node)
		if err != nil {
			t.Fatal(err)
		}
		return Options{Config: nc, Node: node, Resolve: l.resolve, CallTimeout: 5 * time.Second}
	}
	tlsConf, err := EtcdClientTLS(string(s.Secrets.EtcdCACert), string(s.Secrets.EtcdCAKey), time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	admin, err := clientv3.New(clientv3.Config{Endpoints: []string{s.EtcdURL}, TLS: tlsConf, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()

	peer2 := "http://" + closedPort(t)
	if got, err := Stranded(ctx, options("node2"), peer2); err != nil || got != nil {
		t.Fatalf("before any member add: %+v, %v", got, err)
	}
	added, err := admin.MemberAdd(ctx, []string{peer2})
	if err != nil {
		t.Fatal(err)
	}
	got, err := Stranded(ctx, options("node2"), peer2)
	if err != nil || got == nil {
		t.Fatalf("the unstarted member was not found: %+v, %v", got, err)
	}
	if got.ID != added.Member.ID || got.Voting != 2 || got.Started != 1 || got.Removable() ||
		!strings.Contains(got.InitialCluster, "node2="+peer2) || strings.Count(got.InitialCluster, "=") != 2 {
		t.Fatalf("stranded %+v (removable %v), want member %x of 2 voting, 1 started, not removable", got, got.Removable(), added.Member.ID)
	}
	if err := RemoveMember(ctx, options("node2"), got.ID); err == nil {
		t.Fatal("removing a member without quorum succeeded")
	}

	// Start node2's etcd as kubeadm's join would have.
	client2 := "http://" + closedPort(t)
	startEtcd(t, "--name=node2", "--data-dir="+t.TempDir(),
		"--listen-peer-urls="+peer2, "--initial-advertise-peer-urls="+peer2,
		"--listen-client-urls="+client2, "--advertise-client-urls="+client2,
		"--initial-cluster="+got.InitialCluster, "--initial-cluster-state=existing",
		"--unsafe-no-fsync=true", "--log-level=warn")
	deadline := time.Now().Add(90 * time.Second)
	for {
		got, err = Stranded(ctx, options("node2"), peer2)
		if err == nil && got == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("node2's etcd started with InitialCluster did not join within 90s: %+v, %v", got, err)
		}
		time.Sleep(time.Second)
	}

	peer3 := "http://" + closedPort(t)
	var id3 uint64
	for attempt := 0; ; attempt++ {
		// etcd refuses a new voting member until node2 has been connected for a few seconds.
		resp, err := admin.MemberAdd(ctx, []string{peer3})
		if err == nil {
			id3 = resp.Member.ID
			break
		}
		if attempt >= 30 {
			t.Fatalf("adding node3's member: %v", err)
		}
		time.Sleep(time.Second)
	}
	got, err = Stranded(ctx, options("node3"), peer3)
	if err != nil || got == nil || got.ID != id3 || got.Voting != 3 || got.Started != 2 || !got.Removable() {
		t.Fatalf("node3's member: %+v, %v; want %x removable, 2 of 3 started", got, err, id3)
	}
	if err := RemoveMember(ctx, options("node3"), id3); err != nil {
		t.Fatal(err)
	}
	list, err := admin.MemberList(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range list.Members {
		if m.ID == id3 {
			t.Errorf("member %x is still listed", id3)
		}
	}
	if len(list.Members) != 2 {
		t.Errorf("members after the removal: %v", list.Members)
	}
}

// startEtcd runs the test binaries' etcd until the test ends.
func startEtcd(t *testing.T, args ...string) {
	t.Helper()
	cmd := exec.Command(k8sbin.Etcd(t), args...)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("second etcd's output:\n%s", out.String())
		}
	})
}
