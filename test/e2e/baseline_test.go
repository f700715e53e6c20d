package e2e

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// The baseline applies ksboot's Flannel manifest, which reaches the API by the control-plane
// endpoint's name: each guest's script must map that name, or Flannel cannot start there and
// the baseline's time is not a fair reference (run 23 measured it so).
func TestBaselineScriptsMapFlannelEndpoint(t *testing.T) {
	sc, err := LoadScenario(filepath.Join("scenarios", "baseline.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "cluster.yaml")
	if err := os.WriteFile(file, []byte(sc.Clusters[sc.Baseline.Cluster]), 0o600); err != nil {
		t.Fatal(err)
	}
	guests := baselineFiles(t, file, sc, filepath.Join(dir, "manifests"))
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
