package joinorder

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/ksboot/ksboot/cluster"
)

// haCluster has three control planes (node1..node3, 192.168.0.11..13) behind the endpoint
// address 192.168.0.100 and a worker, node4.
func haCluster() *cluster.Cluster {
	c := cluster.Sample(cluster.SampleOptions{})
	c.Spec.Hosts = append(c.Spec.Hosts, cluster.Host{Name: "node4", Address: "192.168.0.14/24", Gateway: "192.168.0.1"})
	c.Spec.RoleGroups = cluster.RoleGroups{
		Etcd: []string{"node1", "node2", "node3"}, ControlPlane: []string{"node1", "node2", "node3"}, Worker: []string{"node4"},
	}
	c.Spec.ControlPlaneEndpoint.Address = "192.168.0.100"
	cluster.SetDefaults(c)
	return c
}

// TestEarlier: control plane k waits for 1..k-1 in file order, never for itself; the first
// control plane and workers wait for nobody.
func TestEarlier(t *testing.T) {
	c := haCluster()
	for _, tc := range []struct {
		node string
		want string
	}{
		{"node1", ""},
		{"node2", "node1=192.168.0.11"},
		{"node3", "node1=192.168.0.11 node2=192.168.0.12"},
		{"node4", ""},
		{"ghost", ""},
	} {
		t.Run(tc.node, func(t *testing.T) {
			cps, err := Earlier(c, tc.node)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, cp := range cps {
				got = append(got, cp.Name+"="+cp.Address)
				if cp.Name == tc.node {
					t.Errorf("%s waits for itself", tc.node)
				}
			}
			if strings.Join(got, " ") != tc.want {
				t.Errorf("Earlier(%s) = %v, want %q", tc.node, got, tc.want)
			}
		})
	}
	t.Run("earlier control plane without a static address", func(t *testing.T) {
		c := haCluster()
		c.Spec.Hosts[1].Address = "" // node2
		if _, err := Earlier(c, "node2"); err != nil {
			t.Errorf("node2's own address does not matter to it: %v", err)
		}
		_, err := Earlier(c, "node3")
		if err == nil || !strings.Contains(err.Error(), "node2") || !strings.Contains(err.Error(), "static address") {
			t.Errorf("want an error naming node2's missing address, got %v", err)
		}
	})
	t.Run("order follows the file", func(t *testing.T) {
		c := haCluster()
		c.Spec.RoleGroups.ControlPlane = []string{"node3", "node1", "node2"}
		cps, _ := Earlier(c, "node2")
		if names(cps) != "node3, node1" {
			t.Errorf("node2 waits for %s, want node3, node1", names(cps))
		}
	})
}

func TestEtcdVerdict(t *testing.T) {
	cp := ControlPlane{Name: "node2", Address: "192.168.0.12"}
	refused := errors.New("dial tcp 192.168.0.12:2379: connect: connection refused")
	started := []member{
		{id: 1, name: "node1", peerURLs: []string{"https://192.168.0.11:2380"}},
		{id: 2, name: "node2", peerURLs: []string{"https://192.168.0.12:2380"}},
	}
	for _, tc := range []struct {
		name    string
		obs     etcdObservation
		members []member
		want    string // "" or a substring
	}{
		{"healthy voting member", etcdObservation{id: 2}, started, ""},
		{"learner by its status", etcdObservation{id: 2, learner: true}, started, "still a learner"},
		{"learner by the member list", etcdObservation{id: 3}, []member{{id: 3, name: "node2", learner: true}}, "still a learner"},
		{"alarm", etcdObservation{id: 2, errors: []string{"NOSPACE"}}, started, "reports NOSPACE"},
		{"no quorum", etcdObservation{id: 2, healthErr: context.DeadlineExceeded}, started, "does not answer health"},
		{"nobody answers", etcdObservation{err: refused}, nil, "etcd does not answer at 192.168.0.12:2379: dial tcp"},
		{"not added yet", etcdObservation{err: refused}, started[:1], "not an etcd member yet"},
		{"added, not started", etcdObservation{err: refused},
			append(started[:1:1], member{id: 2, peerURLs: []string{"https://192.168.0.12:2380"}}), "etcd member not started yet"},
		{"started, unreachable from here", etcdObservation{err: refused}, started, "etcd member does not answer at 192.168.0.12:2379"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := etcdVerdict(cp, tc.obs, tc.members)
			if tc.want == "" && got != "" || tc.want != "" && !strings.Contains(got, tc.want) {
				t.Errorf("etcdVerdict = %q, want %q", got, tc.want)
			}
		})
	}
}

// TestSelfMember: a control plane whose join was cut short after kubeadm added its etcd member
// is found in the member list, by name or, before its member started, by its peer address.
func TestSelfMember(t *testing.T) {
	self := ControlPlane{Name: "node3", Address: "192.168.0.13"}
	list := []member{{id: 1, name: "node1", peerURLs: []string{"https://192.168.0.11:2380"}}}
	if findMember(list, self) != nil {
		t.Error("found node3 in a list without it")
	}
	for _, m := range []member{
		{id: 3, name: "node3", peerURLs: []string{"https://10.0.0.3:2380"}},
		{id: 3, peerURLs: []string{"https://192.168.0.13:2380"}},
	} {
		if findMember(append(list, m), self) == nil {
			t.Errorf("did not find node3 as %+v", m)
		}
	}
	// Without a static address only the name counts.
	if findMember([]member{{id: 3, peerURLs: []string{"https://:2380"}}}, ControlPlane{Name: "node3"}) != nil {
		t.Error("an empty address matched an empty peer host")
	}
}

func TestNodeVerdict(t *testing.T) {
	notFound := apierrors.NewNotFound(schema.GroupResource{Resource: "nodes"}, "node1")
	node := func(conds ...corev1.NodeCondition) *corev1.Node {
		return &corev1.Node{Status: corev1.NodeStatus{Conditions: conds}}
	}
	for _, tc := range []struct {
		name string
		n    *corev1.Node
		err  error
		want string
	}{
		{"missing", nil, notFound, "not a Node yet"},
		{"unreadable", nil, errors.New("connection refused"), "cannot be read through the API: connection refused"},
		{"no condition", node(), nil, "no Ready condition"},
		{"not ready", node(corev1.NodeCondition{Type: corev1.NodeReady, Status: corev1.ConditionFalse, Reason: "KubeletNotReady",
			Message: "container runtime network not ready"}), nil, "Node not Ready (KubeletNotReady: container runtime network not ready)"},
		{"ready", node(corev1.NodeCondition{Type: corev1.NodeMemoryPressure, Status: corev1.ConditionFalse},
			corev1.NodeCondition{Type: corev1.NodeReady, Status: corev1.ConditionTrue}), nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := nodeVerdict(tc.n, tc.err); tc.want == "" && got != "" || !strings.Contains(got, tc.want) {
				t.Errorf("nodeVerdict = %q, want %q", got, tc.want)
			}
		})
	}
}

// TestMint: the client certificates chain to the seed's CAs, are client certificates with the
// expected names, start when the CA does and end soon after the wait.
func TestMint(t *testing.T) {
	s, err := cluster.NewSecrets()
	if err != nil {
		t.Fatal(err)
	}
	nc, err := cluster.NodeConfigFor(haCluster(), s, "node2")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	creds, err := mint(nc.Secrets, "node2", now, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(creds.apiCert)
	api, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	etcd, err := x509.ParseCertificate(creds.etcdPair.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		cert     *x509.Certificate
		caPEM    []byte
		cn, org  string
		otherCA  []byte
		otherWhy string
	}{
		{"API", api, s.CACert, "ksboot:join-order:node2", "system:masters", s.EtcdCACert, "etcd CA"},
		{"etcd", etcd, s.EtcdCACert, EtcdClientCommonName, "", s.CACert, "cluster CA"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			verify := func(caPEM []byte) error {
				pool := x509.NewCertPool()
				pool.AppendCertsFromPEM(caPEM)
				_, err := tc.cert.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
				return err
			}
			if err := verify(tc.caPEM); err != nil {
				t.Errorf("does not verify as a client certificate of its CA: %v", err)
			}
			if verify(tc.otherCA) == nil {
				t.Errorf("verifies against the %s too", tc.otherWhy)
			}
			if tc.cert.Subject.CommonName != tc.cn || strings.Join(tc.cert.Subject.Organization, ",") != tc.org {
				t.Errorf("subject %s, want CN=%s O=%s", tc.cert.Subject, tc.cn, tc.org)
			}
			if tc.cert.NotAfter.After(now.Add(time.Hour)) || tc.cert.NotAfter.Before(now.Add(59*time.Minute)) {
				t.Errorf("valid until %s, want an hour from %s", tc.cert.NotAfter, now)
			}
			if tc.cert.NotBefore.After(now) {
				t.Errorf("not valid before %s", tc.cert.NotBefore)
			}
		})
	}
	worker, _ := cluster.NodeConfigFor(haCluster(), s, "node4")
	if _, err := mint(worker.Secrets, "node4", now, time.Hour); err == nil {
		t.Error("minted certificates from a worker seed, which carries no CA key")
	}
}

// TestWaitFirstControlPlane: the first control plane (and a reinstalled one that joins) waits
// for nobody and contacts nothing.
func TestWaitFirstControlPlane(t *testing.T) {
	s, _ := cluster.NewSecrets()
	nc, _ := cluster.NodeConfigFor(haCluster(), s, "node1")
	err := Wait(context.Background(), Options{Config: nc, Node: "node1",
		Resolve: func(hp string) string { t.Errorf("contacted %s", hp); return hp }})
	if err != nil {
		t.Fatal(err)
	}
}

func TestDescribe(t *testing.T) {
	c := haCluster()
	if d, err := Describe(c, "node1", 0); d != "" || err != nil {
		t.Errorf("Describe(node1) = %q, %v", d, err)
	}
	d, err := Describe(c, "node3", 10*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"would wait: before kubeadm join", "node1 (Ready Node", "192.168.0.11:2379", "/readyz at 192.168.0.12:6443",
		"mirror pod kube-apiserver-node2 Ready", "at most 10m0s", "not contacted"} {
		if !strings.Contains(d, want) {
			t.Errorf("Describe(node3) lacks %q: %s", want, d)
		}
	}
}
