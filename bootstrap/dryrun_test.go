package bootstrap

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/ksboot/ksboot/bootstrap/state"
	"github.com/ksboot/ksboot/bootstrap/workflow"
	"github.com/ksboot/ksboot/cluster"
)

// TestDryRunInitNode runs every phase of the init node with commands only printed: the kubeadm
// config and the manifests land under the root, and the commands come out in phase order.
func TestDryRunInitNode(t *testing.T) {
	root := t.TempDir()
	c := cluster.Sample(cluster.SampleOptions{KubeSphereVersion: "v3.4.1", KubernetesVersion: "v1.26.5"})
	c.Spec.Network.Plugin = "flannel"
	if err := state.WriteFileAtomic(filepath.Join(root, "etc/os-release"), []byte("ID=debian\nVERSION_ID=\"12\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := cluster.NewSecrets()
	if err != nil {
		t.Fatal(err)
	}
	nc, err := cluster.NodeConfigFor(c, s, "node1")
	if err != nil {
		t.Fatal(err)
	}
	data, _ := nc.Marshal()
	if err := state.WriteFileAtomic(filepath.Join(root, "etc/ksboot/node.yaml"), data, 0o600); err != nil {
		t.Fatal(err)
	}
	var console bytes.Buffer
	_, err = Run(context.Background(), Options{ConfigPath: "/etc/ksboot/node.yaml", Root: root, DryRun: true, Console: &console,
		Interfaces: func() ([]string, error) { return []string{"192.168.0.11/24"}, nil }})
	if err != nil {
		t.Fatalf("%v\n%s", err, console.String())
	}
	out := console.String()
	order := []string{`\[preflight\]`, `would run: hostname node1`, `would run: swapoff -a`, `would install: kubeadm v1\.26\.5 \(amd64\) from https://`, `would run: apt-get`,
		`\[discover\]`, `would run: kubeadm init --config /etc/ksboot/kubeadm.yaml`, `would apply: .*cni.yaml`, `would apply: .*kubesphere.yaml`}
	pos := 0
	for _, re := range order {
		loc := regexp.MustCompile(re).FindStringIndex(out[pos:])
		if loc == nil {
			t.Fatalf("dry run output lacks %s after position %d:\n%s", re, pos, out)
		}
		pos += loc[1]
	}
	kcfg, err := os.ReadFile(filepath.Join(root, "etc/ksboot/kubeadm.yaml"))
	if err != nil || !strings.Contains(string(kcfg), "kind: InitConfiguration") {
		t.Errorf("kubeadm config not written: %v", err)
	}
	for _, f := range []string{"cni.yaml", "storage.yaml", "kubesphere.yaml"} {
		if _, err := os.Stat(filepath.Join(root, "etc/ksboot/manifests", f)); err != nil {
			t.Errorf("manifest %s: %v", f, err)
		}
	}
	if _, err := os.Stat(filepath.Join(root, workflow.CompleteMarker)); err != nil {
		t.Errorf("no completion marker under the root: %v", err)
	}
	if _, err := os.Stat(filepath.Join(root, "etc/kubernetes/pki/ca.key")); err != nil {
		t.Errorf("the init node's CA was not placed: %v", err)
	}
}

// lbCluster has three control planes (node1..node3) and a worker (node4) with the internal
// load balancer lb; kube-vip holds 192.168.0.100.
func lbCluster(lb string) *cluster.Cluster {
	c := cluster.Sample(cluster.SampleOptions{})
	c.Spec.Hosts = append(c.Spec.Hosts, cluster.Host{Name: "node4", Address: "192.168.0.14/24", Gateway: "192.168.0.1"})
	c.Spec.RoleGroups = cluster.RoleGroups{
		Etcd: []string{"node1", "node2", "node3"}, ControlPlane: []string{"node1", "node2", "node3"}, Worker: []string{"node4"},
	}
	c.Spec.ControlPlaneEndpoint.InternalLoadbalancer = lb
	if lb == cluster.InternalLBKubeVIP {
		c.Spec.ControlPlaneEndpoint.Address = "192.168.0.100"
		c.Spec.Kubernetes.ProxyMode = "ipvs"
	}
	c.Spec.Discovery.Mode = ""
	cluster.SetDefaults(c)
	return c
}

// TestDryRunInternalLoadBalancer runs the agent in a dry run on nodes of clusters with an
// internal load balancer and checks what lands under the root, and when: on a worker of a
// haproxy cluster haproxy.cfg and the haproxy static pod are written before `kubeadm join`
// (the kubelet kubeadm starts runs it) and lb.kubesphere.local moves to 127.0.0.1 after it; on
// the first control plane of a kube-vip cluster the kube-vip static pod is written before
// `kubeadm init` with super-admin.conf and rewritten afterwards with admin.conf; a joining
// control plane gets kube-vip only after its join.
func TestDryRunInternalLoadBalancer(t *testing.T) {
	for _, tc := range []struct {
		name, lb, host string
		order          []string // console lines, in this order
		files          map[string]string
		hosts          string
	}{
		{"haproxy worker", cluster.InternalLBHAProxy, "node4", []string{
			`haproxy: wrote /etc/ksboot/haproxy/haproxy.cfg \(3 control planes behind 127\.0\.0\.1:6443\)`,
			`haproxy: wrote /etc/kubernetes/manifests/haproxy.yaml \(static pod, docker\.io/library/haproxy:`,
			`would run: kubeadm join --config /etc/ksboot/kubeadm.yaml`,
			`would wait: for haproxy at 127\.0\.0\.1:6443 to reach a control plane`,
			`lb\.kubesphere\.local now resolves to 127\.0\.0\.1`,
		}, map[string]string{
			"etc/ksboot/haproxy/haproxy.cfg":        "server node3 192.168.0.13:6443 check check-ssl verify none",
			"etc/kubernetes/manifests/haproxy.yaml": "path: /etc/ksboot/haproxy",
		}, "127.0.0.1 lb.kubesphere.local"},
		{"haproxy control plane", cluster.InternalLBHAProxy, "node1", []string{
			`would run: kubeadm init`,
			`lb\.kubesphere\.local now resolves to 192\.168\.0\.11 \(internal load balancer haproxy\)`,
		}, nil, "192.168.0.11 lb.kubesphere.local"},
		{"kube-vip first control plane", cluster.InternalLBKubeVIP, "node1", []string{
			`kube-vip: wrote /etc/kubernetes/manifests/kube-vip\.yaml \(static pod holding the VIP 192\.168\.0\.100, API access through /etc/kubernetes/super-admin\.conf\)`,
			`would run: kubeadm init --config /etc/ksboot/kubeadm.yaml`,
			`kube-vip: wrote /etc/kubernetes/manifests/kube-vip\.yaml \(static pod holding the VIP 192\.168\.0\.100, API access through /etc/kubernetes/admin\.conf\)`,
		}, map[string]string{
			"etc/kubernetes/manifests/kube-vip.yaml": "path: /etc/kubernetes/admin.conf",
			"etc/ksboot/kubeadm.yaml":                "    - 192.168.0.100/32",
		}, "192.168.0.11 lb.kubesphere.local"},
		{"kube-vip joining control plane", cluster.InternalLBKubeVIP, "node2", []string{
			`would discover: the control plane at the static endpoint 192\.168\.0\.100:6443`,
			`would wait: before kubeadm join, for control plane node1 \(Ready Node; started voting etcd member answering health at 192\.168\.0\.11:2379; /readyz at 192\.168\.0\.11:6443 or mirror pod kube-apiserver-node1 Ready\), at most 30m0s, .*\(not contacted: a dry run sends nothing\)`,
			`would run: kubeadm join --config /etc/ksboot/kubeadm.yaml`,
			`kube-vip: wrote /etc/kubernetes/manifests/kube-vip\.yaml \(static pod holding the VIP 192\.168\.0\.100, API access through /etc/kubernetes/admin\.conf\)`,
		}, map[string]string{
			"etc/kubernetes/manifests/kube-vip.yaml": "value: 192.168.0.100",
		}, "192.168.0.100 lb.kubesphere.local"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			requested := refuseHTTP(t)
			root, out := dryRunNode(t, lbCluster(tc.lb), tc.host, "addons", "kubesphere")
			if urls := requested(); len(urls) > 0 {
				t.Errorf("the dry run requested %v", urls)
			}
			// Only a joining control plane waits for the ones before it: not the first, not a worker.
			if waits := strings.Contains(out, "would wait: before kubeadm join"); waits != (tc.host == "node2") {
				t.Errorf("%s waits for earlier control planes: %v\n%s", tc.host, waits, out)
			}
			pos := 0
			for _, re := range tc.order {
				loc := regexp.MustCompile(re).FindStringIndex(out[pos:])
				if loc == nil {
					t.Fatalf("dry run output lacks %s after position %d:\n%s", re, pos, out)
				}
				pos += loc[1]
			}
			for f, want := range tc.files {
				data, err := os.ReadFile(filepath.Join(root, f))
				if err != nil || !strings.Contains(string(data), want) {
					t.Errorf("%s lacks %q (%v):\n%s", f, want, err, data)
				}
			}
			if tc.lb == cluster.InternalLBHAProxy && tc.host != "node4" {
				if _, err := os.Stat(filepath.Join(root, "etc/kubernetes/manifests/haproxy.yaml")); err == nil {
					t.Error("a control plane got haproxy")
				}
			}
			hosts, err := os.ReadFile(filepath.Join(root, "etc/hosts"))
			if err != nil || !strings.Contains(string(hosts), tc.hosts+"\n") {
				t.Errorf("/etc/hosts lacks %q (%v):\n%s", tc.hosts, err, hosts)
			}
		})
	}
}
