package kubeadm

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ksboot/ksboot/bootstrap/host/hosttest"
	"github.com/ksboot/ksboot/bootstrap/joinorder"
)

// What kubeadm v1.26 printed on the ha scenario's cp2 when its member add's first answer was
// lost (2 s per call under TCG) and the retry found the member already there, unstarted.
const strandedJoinOutput = "error execution phase control-plane-join/etcd: error creating local etcd static pod manifest file: " +
	"etcdserver: re-configuration failed due to not enough started members"

// controlPlaneJoin is runOptions for node2 as a joining control plane whose etcd member answers
// come from members, one per call (nil once they run out).
func controlPlaneJoin(t *testing.T, stub *hosttest.Stub, members []*joinorder.StrandedMember, removed *[]uint64) (RunOptions, *strings.Builder) {
	t.Helper()
	o := runOptions(t, "node2", stub)
	o.Params.Role = RoleControlPlane
	o.Params.AdvertiseAddress = "192.168.0.12"
	var console strings.Builder
	o.Console = &console
	calls := 0
	o.Etcd = EtcdMembers{
		Stranded: func(context.Context) (*joinorder.StrandedMember, error) {
			calls++
			if calls > len(members) {
				return nil, nil
			}
			return members[calls-1], nil
		},
		Remove: func(_ context.Context, id uint64) error {
			*removed = append(*removed, id)
			return nil
		},
	}
	return o, &console
}

// The second control plane's member was added and never started: the cluster has no quorum,
// so it cannot be removed. ksboot starts it with kubeadm's own manifest and finishes the join
// without a reset (which would only stop the kubelet that is to run it).
func TestJoinStartsStrandedEtcdMember(t *testing.T) {
	stub := hosttest.NewStub(t)
	initial := "node1=https://192.168.0.11:2380,node2=https://192.168.0.12:2380"
	stranded := &joinorder.StrandedMember{ID: 0xabc, InitialCluster: initial, Voting: 2, Started: 1}
	var removed []uint64
	// Found after the failed join, and once more while its etcd starts.
	o, console := controlPlaneJoin(t, stub, []*joinorder.StrandedMember{stranded, stranded}, &removed)
	stub.Register(`^kubeadm join --config /etc/ksboot/kubeadm.yaml`, strandedJoinOutput, errors.New("exit status 1"))
	stub.RegisterDo(`^kubeadm init phase etcd local --config /etc/ksboot/kubeadm-etcd-member.yaml$`, func() (string, error) {
		cfg, err := o.Root.ReadFile(EtcdMemberConfigPath)
		if err != nil {
			return "", err
		}
		for _, want := range []string{"kind: InitConfiguration", "name: node2", "advertiseAddress: 192.168.0.12", initial, "existing"} {
			if !strings.Contains(string(cfg), want) {
				return "", errors.New("the etcd member configuration lacks " + want + ":\n" + string(cfg))
			}
		}
		if fi, err := os.Stat(o.Root.Path(EtcdMemberConfigPath)); err != nil || fi.Mode().Perm() != 0o600 {
			return "", errors.New("the etcd member configuration (with the token) is not 0600")
		}
		return "[etcd] Creating static Pod manifest for local etcd", nil
	})
	stub.RegisterDo(`^kubeadm join --config /etc/ksboot/kubeadm.yaml --skip-phases preflight,control-plane-prepare,kubelet-start$`, kubeadmWrites(o.Root))
	if err := Run(context.Background(), o); err != nil {
		t.Fatalf("%v\nconsole:\n%s", err, console)
	}
	if !o.Root.Exists(DoneMarker) {
		t.Error("the finished join was not recorded")
	}
	if len(removed) > 0 {
		t.Errorf("removed %x from a cluster without quorum", removed)
	}
	for _, c := range stub.Calls {
		if strings.Contains(c, "reset") {
			t.Errorf("kubeadm reset ran: %q", stub.Calls)
		}
	}
	for _, want := range []string{"etcd member abc, added by a join that failed before its etcd started (1 of 2 voting members started)",
		"cannot be removed: starting it", "waiting for etcd member abc to start", "etcd member abc started after"} {
		if !strings.Contains(console.String(), want) {
			t.Errorf("console lacks %q:\n%s", want, console)
		}
	}
}

// A third control plane's stranded member leaves the first two a quorum: it is removed and the
// join starts again from a reset node.
func TestJoinRemovesStrandedEtcdMember(t *testing.T) {
	stub := hosttest.NewStub(t)
	var removed []uint64
	o, console := controlPlaneJoin(t, stub, []*joinorder.StrandedMember{{ID: 0xdef, Voting: 3, Started: 2}}, &removed)
	stub.Register(`^kubeadm join --config /etc/ksboot/kubeadm.yaml`, strandedJoinOutput, errors.New("exit status 1"))
	stub.Register(`^kubeadm reset -f --cri-socket`, "", nil)
	stub.RegisterDo(`^kubeadm join --config /etc/ksboot/kubeadm.yaml$`, kubeadmWrites(o.Root))
	if err := Run(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	if len(removed) != 1 || removed[0] != 0xdef {
		t.Errorf("removed %x, want def", removed)
	}
	if !strings.Contains(console.String(), "removed etcd member def") {
		t.Errorf("console:\n%s", console)
	}
}

// A stranded member whose etcd does not start within the bound is reported, and the join goes
// on as after any failure: kubeadm reset and another attempt.
func TestJoinStrandedEtcdMemberThatDoesNotStart(t *testing.T) {
	stub := hosttest.NewStub(t)
	stranded := &joinorder.StrandedMember{ID: 0xabc, InitialCluster: "node1=https://192.168.0.11:2380,node2=https://192.168.0.12:2380", Voting: 2, Started: 1}
	always := make([]*joinorder.StrandedMember, 1000)
	for i := range always {
		always[i] = stranded
	}
	var removed []uint64
	o, console := controlPlaneJoin(t, stub, always, &removed)
	stub.Register(`^kubeadm join --config /etc/ksboot/kubeadm.yaml`, strandedJoinOutput, errors.New("exit status 1"))
	stub.Register(`^kubeadm init phase etcd local`, "", nil)
	stub.Register(`^kubeadm reset -f --cri-socket`, "", nil)
	stub.RegisterDo(`^kubeadm join --config /etc/ksboot/kubeadm.yaml$`, kubeadmWrites(o.Root))
	if err := Run(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(console.String(), "starting etcd member abc failed: etcd member abc did not start within 5m0s") {
		t.Errorf("console:\n%s", console)
	}
}

// TestKubeadmEtcdMemberManifest: for every judged release, the configuration that starts a
// stranded member makes that release's own `kubeadm init phase etcd local` write the manifest
// its join would have written: this node's name and peer URL, the whole member list as the
// initial cluster, and state existing.
func TestKubeadmEtcdMemberManifest(t *testing.T) {
	forEachJudged(t, func(t *testing.T, version, kubeadm string) {
		_, _, p, root := controlPlaneWithPKI(t)
		p.KubernetesVersion = version
		p.NodeName, p.AdvertiseAddress = "node2", "192.168.0.12"
		initial := "node1=https://192.168.0.11:2380,node2=https://192.168.0.12:2380"
		cfg := writeConfig(t, root, etcdMemberParams(p, initial))
		dryRun := filepath.Join(root, "dry-run")
		if err := os.Mkdir(dryRun, 0o700); err != nil {
			t.Fatal(err)
		}
		keepHostKubernetes(t)
		out, err := runKubeadm(t, kubeadm, []string{"KUBEADM_INIT_DRYRUN_DIR=" + dryRun}, "init", "phase", "etcd", "local", "--dry-run", "--config", cfg)
		if err != nil {
			t.Fatalf("kubeadm %s init phase etcd local --dry-run: %v\n%s", version, err, out)
		}
		// kubeadm before v1.37 writes into a temporary directory of its own under the dry-run
		// directory; v1.37 prints the manifest instead.
		manifest := out
		if found, _ := filepath.Glob(filepath.Join(dryRun, "tmp", "kubeadm-init-dryrun*", "etcd.yaml")); len(found) == 1 {
			data, err := os.ReadFile(found[0])
			if err != nil {
				t.Fatal(err)
			}
			manifest = string(data)
		}
		if !strings.Contains(manifest, "kind: Pod") {
			t.Fatalf("kubeadm %s wrote no etcd manifest under %s, nor printed one:\n%s", version, dryRun, out)
		}
		for _, want := range []string{
			"- --initial-cluster=" + initial,
			"- --initial-cluster-state=existing",
			"- --name=node2",
			"- --initial-advertise-peer-urls=https://192.168.0.12:2380",
			"- --advertise-client-urls=https://192.168.0.12:2379",
		} {
			if !strings.Contains(manifest, want) {
				t.Errorf("kubeadm %s: the etcd manifest lacks %q:\n%s", version, want, manifest)
			}
		}
	})
}

// What the ha scenario's cp2 printed in VM run 4: its etcd member had joined, then marking the
// node failed because the VIP was away for a moment.
const markFailedOutput = "error execution phase control-plane-join/mark-control-plane: error applying control-plane label and taints: " +
	"Get \"https://lb.kubesphere.local:6443/api/v1/nodes/cp2?timeout=10s\": dial tcp 10.77.0.50:6443: connect: no route to host"

// A control-plane join that fails after its etcd member joined (kubeadm wrote the etcd
// manifest) is finished, retried as often as needed, and never reset: a reset could not remove
// the member while the API is away, and would leave a two-member etcd without quorum.
func TestJoinAfterEtcdMemberJoinedIsFinishedNotReset(t *testing.T) {
	stub := hosttest.NewStub(t)
	var removed []uint64
	o, console := controlPlaneJoin(t, stub, nil, &removed)
	o.Etcd.Stranded = func(context.Context) (*joinorder.StrandedMember, error) {
		t.Error("etcd was asked about a stranded member although the manifest says the member joined")
		return nil, nil
	}
	stub.RegisterDo(`^kubeadm join --config /etc/ksboot/kubeadm.yaml --ignore-preflight-errors`, func() (string, error) {
		if _, err := o.Root.WriteFile(ManifestsDir+"/etcd.yaml", []byte("kind: Pod\n"), 0o600); err != nil {
			return "", err
		}
		return markFailedOutput, errors.New("exit status 1")
	})
	finish := `^kubeadm join --config /etc/ksboot/kubeadm.yaml --skip-phases preflight,control-plane-prepare,kubelet-start$`
	stub.Register(finish, markFailedOutput, errors.New("exit status 1"))
	stub.RegisterDo(finish, kubeadmWrites(o.Root))
	o.IgnorePreflight = []string{"NumCPU"}
	if err := Run(context.Background(), o); err != nil {
		t.Fatalf("%v\nconsole:\n%s", err, console)
	}
	for _, c := range stub.Calls {
		if strings.Contains(c, "reset") {
			t.Errorf("kubeadm reset ran: %q", stub.Calls)
		}
	}
	if !o.Root.Exists(DoneMarker) {
		t.Error("the finished join was not recorded")
	}
	for _, want := range []string{"finishing the join without a reset", "the rest of kubeadm join 192.168.0.11:6443 (attempt 3)"} {
		if !strings.Contains(console.String(), want) {
			t.Errorf("console lacks %q:\n%s", want, console)
		}
	}
}
