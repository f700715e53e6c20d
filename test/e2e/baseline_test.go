package e2e

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/ksboot/ksboot/test/k8sbin"
)

// The baseline applies ksboot's Flannel manifest, which reaches the API by the control-plane
// endpoint's name: each guest's script must map that name and the API server's certificate
// must hold it, or Flannel cannot start there and the baseline's time is not a fair reference
// (runs 23 and 26 measured it so).
func TestBaselineScriptsMapFlannelEndpoint(t *testing.T) {
	sc, guests := renderBaseline(t)
	initAddr := guests[sc.Baseline.Init].address
	cni := fileIn(t, guests[sc.Baseline.Init], "/root/cni.yaml")
	m := regexp.MustCompile(`name: KUBERNETES_SERVICE_HOST\s+value: "?([^"\s]+)`).FindStringSubmatch(cni)
	if m == nil {
		t.Fatal("the rendered cni.yaml sets no KUBERNETES_SERVICE_HOST")
	}
	host := m[1]
	if net.ParseIP(host) != nil {
		t.Skipf("Flannel is given the address %s, which needs no mapping", host)
	}
	// And the API server's certificate must name it, or Flannel's TLS check refuses the
	// server (run 26: "x509: certificate is valid for cp1, kubernetes, ..., not
	// lb.kubesphere.local").
	var cc struct {
		Kind      string `yaml:"kind"`
		APIServer struct {
			CertSANs []string `yaml:"certSANs"`
		} `yaml:"apiServer"`
	}
	dec := yaml.NewDecoder(strings.NewReader(fileIn(t, guests[sc.Baseline.Init], "/root/kubeadm.yaml")))
	for cc.Kind != "ClusterConfiguration" {
		cc.Kind = ""
		if err := dec.Decode(&cc); err != nil {
			t.Fatalf("kubeadm.yaml: no ClusterConfiguration: %v", err)
		}
	}
	if !slices.Contains(cc.APIServer.CertSANs, host) {
		t.Errorf("kubeadm.yaml: apiServer.certSANs is %q, want it to hold %s", cc.APIServer.CertSANs, host)
	}
	for _, g := range sc.Guests {
		script := fileIn(t, guests[g.Name], "/root/bootstrap.sh")
		if !strings.Contains(script, initAddr+" "+host+`" >> /etc/hosts`) {
			t.Errorf("guest %s: bootstrap.sh does not map %s to %s in /etc/hosts", g.Name, host, initAddr)
		}
		cmd := exec.Command("bash", "-n")
		cmd.Stdin = strings.NewReader(script)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("guest %s: bootstrap.sh: bash -n: %v\n%s", g.Name, err, out)
		}
	}
}

// renderBaseline renders the baseline scenario's seeds as the suite does: its real cluster
// file, fresh secrets and ksboot's rendered CNI manifest.
func renderBaseline(t *testing.T) (*Scenario, map[string]baselineGuest) {
	t.Helper()
	sc, err := LoadScenario(filepath.Join("scenarios", "baseline.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "cluster.yaml")
	if err := os.WriteFile(file, []byte(sc.Clusters[sc.Baseline.Cluster]), 0o600); err != nil {
		t.Fatal(err)
	}
	return sc, baselineFiles(t, file, sc, filepath.Join(dir, "manifests"))
}

func fileIn(t *testing.T, g baselineGuest, path string) string {
	t.Helper()
	for _, f := range g.files {
		if f.path == path {
			return f.content
		}
	}
	t.Fatalf("no %s among the guest's files", path)
	return ""
}

// The baseline's hand-written kubeadm configuration is one kubeadm accepts: a mistake there
// would otherwise show only as a guest that never runs `kubeadm init`, half an hour into a run.
func TestBaselineKubeadmConfigValid(t *testing.T) {
	sc, guests := renderBaseline(t)
	dir := t.TempDir()
	config := filepath.Join(dir, "kubeadm.yaml")
	if err := os.WriteFile(config, []byte(fileIn(t, guests[sc.Baseline.Init], "/root/kubeadm.yaml")), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(k8sbin.Kubeadm(t), "config", "validate", "--config", config).CombinedOutput()
	if err != nil {
		t.Fatalf("kubeadm config validate: %v\n%s", err, out)
	}
}
