package e2e

import (
	"os"
	"strings"
	"testing"
	"time"
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
