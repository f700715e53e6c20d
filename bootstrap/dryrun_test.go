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
