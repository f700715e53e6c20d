package bootstrap

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/ksboot/ksboot/bootstrap/addons"
	"github.com/ksboot/ksboot/bootstrap/state"
	"github.com/ksboot/ksboot/cluster"
)

// refuseHTTP replaces http.DefaultTransport, which the Calico and chart downloads use when no
// client is given, for the test's duration and returns the URLs that were requested anyway.
// The network-namespace test in cmd/ksboot proves the whole process opens no socket; this one
// pins the phases' output without needing root.
func refuseHTTP(t *testing.T) func() []string {
	var mu sync.Mutex
	var urls []string
	old := http.DefaultTransport
	http.DefaultTransport = roundTripFunc(func(r *http.Request) (*http.Response, error) {
		mu.Lock()
		defer mu.Unlock()
		urls = append(urls, r.URL.String())
		return nil, errors.New("the test refuses HTTP")
	})
	t.Cleanup(func() { http.DefaultTransport = old })
	return func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), urls...)
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// dryRunNode writes the node config of host for cluster c under a new root and runs the
// phases but skip with --dry-run; it returns the root and the console output.
func dryRunNode(t *testing.T, c *cluster.Cluster, host string, skip ...string) (string, string) {
	t.Helper()
	root := t.TempDir()
	if err := state.WriteFileAtomic(filepath.Join(root, "etc/os-release"), []byte("ID=debian\nVERSION_ID=\"12\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := cluster.NewSecrets()
	if err != nil {
		t.Fatal(err)
	}
	nc, err := cluster.NodeConfigFor(c, s, host)
	if err != nil {
		t.Fatal(err)
	}
	data, err := nc.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if err := state.WriteFileAtomic(filepath.Join(root, "etc/ksboot/node.yaml"), data, 0o600); err != nil {
		t.Fatal(err)
	}
	var console bytes.Buffer
	if _, err := Run(context.Background(), Options{ConfigPath: "/etc/ksboot/node.yaml", Root: root, DryRun: true, Console: &console, Skip: skip,
		Interfaces: func() ([]string, error) { return nil, nil }}); err != nil {
		t.Fatalf("%v\n%s", err, console.String())
	}
	return root, console.String()
}

// TestDryRunFetchesNothing runs the init node of clusters whose addons and KubeSphere come from
// the network (Calico's manifest, the v4 ks-core chart) and of one with static discovery: each
// phase names the source instead of downloading, and the manifests ksboot generates are written.
func TestDryRunFetchesNothing(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(*cluster.Cluster)
		host   string
		want   []string
		hosts  string // the line /etc/hosts must get for the endpoint domain
	}{
		{"calico and ks-core from upstream", func(c *cluster.Cluster) {
			c.Spec.KubeSphere = cluster.KubeSphere{Enabled: true, Version: "v4.1.3"}
		}, "node1", []string{
			"would fetch and apply: cni " + addons.CalicoManifest.Name + " from " + addons.CalicoManifest.URL + ", sha256 " + addons.CalicoManifest.SHA256,
			"would fetch: the ks-core chart v4.1.3 from https://charts.kubesphere.io/main/ks-core-",
			"would discover: the control plane by mDNS (_ksboot._tcp, cluster sample, CA id ",
			"this node initialises it",
		}, "192.168.0.11 lb.kubesphere.local"},
		{"calico and ks-core from the bundle", func(c *cluster.Cluster) {
			c.Spec.KubeSphere = cluster.KubeSphere{Enabled: true, Version: "v4.1.3", Chart: "charts/ks-core.tgz"}
			c.Spec.Artifacts.Bundle = "label:KSBUNDLE"
		}, "node1", []string{
			"would fetch and apply: cni " + addons.CalicoManifest.Name + " from the offline bundle label:KSBUNDLE (manifests/" + addons.CalicoManifest.Name + "), sha256 " + addons.CalicoManifest.SHA256,
			"would load: the ks-core chart v4.1.3 from the offline bundle label:KSBUNDLE (charts/ks-core.tgz)",
		}, ""},
		{"a worker with a static endpoint", func(c *cluster.Cluster) {
			c.Spec.Discovery.Mode = cluster.DiscoveryStatic
			c.Spec.ControlPlaneEndpoint.Address = "192.168.0.100"
		}, "node2", []string{
			"would discover: the control plane at the static endpoint 192.168.0.100:6443, verifying its certificate",
			"assuming the control plane at 192.168.0.100:6443",
			"would run: kubeadm join",
		}, "192.168.0.100 lb.kubesphere.local"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			requested := refuseHTTP(t)
			c := cluster.Sample(cluster.SampleOptions{KubernetesVersion: "v1.30.0"})
			tc.change(c)
			cluster.SetDefaults(c)
			var skip []string
			if c.Spec.Artifacts.Bundle != "" {
				// The install phase's dry run looks for the bundle's volume itself
				// (bootstrap/install), which is not attached here.
				skip = []string{"install"}
			}
			root, out := dryRunNode(t, c, tc.host, skip...)
			if urls := requested(); len(urls) > 0 {
				t.Errorf("the dry run requested %v", urls)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
			if strings.Contains(out, "certificate verified") {
				t.Errorf("the dry run claims a certificate was verified:\n%s", out)
			}
			hosts, err := os.ReadFile(filepath.Join(root, "etc/hosts"))
			if err != nil {
				t.Fatal(err)
			}
			if tc.hosts != "" && !strings.Contains(string(hosts), tc.hosts+"\n") {
				t.Errorf("/etc/hosts lacks %q:\n%s", tc.hosts, hosts)
			}
			if strings.Contains(string(hosts), "lb.kubesphere.local lb.kubesphere.local") {
				t.Errorf("/etc/hosts maps the endpoint domain to itself:\n%s", hosts)
			}
		})
	}
}
