package e2e

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

func TestTimingsTable(t *testing.T) {
	sc := &Scenario{Name: "demo", Guests: []GuestSpec{{Name: "cp1"}, {Name: "w1"}}}
	tm := newTimings()
	tm.saw("cp1", "install", 150*time.Second, false)
	tm.saw("cp1", "install", 170*time.Second, false) // seen again on the next poll: first sighting counts
	tm.saw("w1", "discover", 300*time.Second, true)
	tm.saw("w1", "discover", 400*time.Second, false) // failed, then done after a restart
	tm.note("cp1", "hard reset at 2m0s")
	tm.clusterReady(900 * time.Second)
	got := tm.table(sc, map[string]time.Duration{"cp1": 0, "w1": 240 * time.Second})
	for _, want := range []string{
		"cp1 0s - - 150 - - - -",
		"w1 240s - - - 400 - - -",
		"cp1: hard reset at 2m0s",
		"first power-on → all Nodes Ready: 900 s",
	} {
		if !strings.Contains(strings.Join(strings.Fields(got), " "), want) {
			t.Errorf("table lacks %q:\n%s", want, got)
		}
	}
	if tm.Ready() != 900*time.Second {
		t.Errorf("Ready %s", tm.Ready())
	}
}

func TestLoadScenarioRejectsBadFiles(t *testing.T) {
	for name, text := range map[string]string{
		"unknown field": "name: x\ndeadline: 1m\nbogus: 1\n",
		"bad mac":       "name: x\ndeadline: 1m\nclusters: {a: ''}\nseeds: [{name: s, cluster: a}]\nguests: [{name: g, seed: s, mac: 'AA:BB'}]\n",
		"unknown seed":  "name: x\ndeadline: 1m\nguests: [{name: g, seed: s, mac: '52:54:00:00:00:01'}]\n",
		"bad duration":  "name: x\ndeadline: soon\n",
		"niceOn without nice": "name: x\ndeadline: 1m\nclusters: {a: ''}\nseeds: [{name: s, cluster: a}]\n" +
			"guests: [{name: g, seed: s, mac: '52:54:00:00:00:01', niceOn: 'joined'}]\n",
		"nice out of range": "name: x\ndeadline: 1m\nclusters: {a: ''}\nseeds: [{name: s, cluster: a}]\n" +
			"guests: [{name: g, seed: s, mac: '52:54:00:00:00:01', nice: 25}]\n",
		"clustersFrom a missing scenario": "name: x\ndeadline: 1m\nclustersFrom: nowhere\n",
		"clustersFrom and clusters":       "name: x\ndeadline: 1m\nclustersFrom: s\nclusters: {a: ''}\n",
		"clustersFrom itself":             "name: x\ndeadline: 1m\nclustersFrom: s\n",
	} {
		p := t.TempDir() + "/s.yaml"
		if err := writeFile0(p, text); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadScenario(p); err == nil {
			t.Errorf("%s: loaded without error", name)
		}
	}
}

func writeFile0(p, s string) error { return os.WriteFile(p, []byte(s), 0o600) }

// TestClustersFrom: single-node runs mdns-cluster's cluster file, not a copy of it.
func TestClustersFrom(t *testing.T) {
	single, err := LoadScenario("scenarios/single-node.yaml")
	if err != nil {
		t.Fatal(err)
	}
	mdns, err := LoadScenario("scenarios/mdns-cluster.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if single.Clusters["main"] == "" || single.Clusters["main"] != mdns.Clusters["main"] {
		t.Errorf("single-node's cluster main is not mdns-cluster's:\n%s", single.Clusters["main"])
	}
}

// TestKubernetesVersionOverride: single-node-1.26 is single-node's cluster at v1.26.5, every
// other field unchanged, and the suite prepares its bundle at that release.
func TestKubernetesVersionOverride(t *testing.T) {
	v126, err := LoadScenario("scenarios/single-node-1.26.yaml")
	if err != nil {
		t.Fatal(err)
	}
	base, err := LoadScenario("scenarios/single-node.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if v126.Version() != "v1.26.5" || base.Version() == "v1.26.5" || base.Version() == "" {
		t.Fatalf("versions %q and %q, want v1.26.5 and the cluster file's own", v126.Version(), base.Version())
	}
	var a, b map[string]any
	if err := yaml.Unmarshal([]byte(v126.Clusters["main"]), &a); err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal([]byte(base.Clusters["main"]), &b); err != nil {
		t.Fatal(err)
	}
	k := a["spec"].(map[string]any)["kubernetes"].(map[string]any)
	if k["version"] != "v1.26.5" {
		t.Errorf("spec.kubernetes.version = %v, want v1.26.5", k["version"])
	}
	// The patches are the scenario's own: v1.26's etcd and scheduler have no readiness probe.
	patches, _ := k["patches"].([]any)
	if len(patches) != 4 {
		t.Fatalf("spec.kubernetes.patches = %v, want the scenario's four", k["patches"])
	}
	for _, p := range patches {
		pm := p.(map[string]any)
		if t0 := pm["target"]; (t0 == "etcd" || t0 == "kube-scheduler") && strings.Contains(pm["patch"].(string), "readinessProbe") {
			t.Errorf("the %s patch sets a readiness probe, which kubeadm v1.26's manifest lacks", t0)
		}
	}
	bk := b["spec"].(map[string]any)["kubernetes"].(map[string]any)
	k["version"], k["patches"] = bk["version"], bk["patches"]
	if !reflect.DeepEqual(a, b) {
		t.Errorf("the override changed more than spec.kubernetes.version and patches:\n%s\nvs\n%s", v126.Clusters["main"], base.Clusters["main"])
	}
	// A release outside the matrix is refused when the scenario loads.
	dir := t.TempDir()
	bad := strings.Replace(mustRead(t, "scenarios/single-node-1.26.yaml"), "kubernetesVersion: v1.26.5", "kubernetesVersion: v1.19.0", 1)
	if err := writeFile0(filepath.Join(dir, "bad.yaml"), bad); err != nil {
		t.Fatal(err)
	}
	if err := writeFile0(filepath.Join(dir, "mdns-cluster.yaml"), mustRead(t, "scenarios/mdns-cluster.yaml")); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadScenario(filepath.Join(dir, "bad.yaml")); err == nil || !strings.Contains(err.Error(), "v1.19.0") {
		t.Errorf("a scenario at v1.19.0 loaded (err %v), want an error naming the version", err)
	}
}

func mustRead(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
