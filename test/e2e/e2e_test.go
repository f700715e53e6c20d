package e2e

import (
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestE2E runs the scenarios named in KSBOOT_E2E (comma-separated, or "all"), in the order
// given; without it the suite is skipped, saying how to run it. With KSBOOT_E2E_PREPARE_ONLY
// set it only builds (or finds cached) what those scenarios need.
func TestE2E(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the e2e scenarios boot three VMs for tens of minutes")
	}
	files, err := Scenarios("scenarios")
	if err != nil {
		t.Fatal(err)
	}
	// Every scenario file must load, run or not.
	scenarios := map[string]*Scenario{}
	for name, f := range files {
		sc, err := LoadScenario(f)
		if err != nil {
			t.Fatal(err)
		}
		if sc.Name != name {
			t.Fatalf("%s: name %q, want the file's name %q", f, sc.Name, name)
		}
		scenarios[name] = sc
	}
	sel := os.Getenv("KSBOOT_E2E")
	if sel == "" {
		t.Skipf("set KSBOOT_E2E to run scenarios (comma-separated, or all): %s", strings.Join(sortedKeys(scenarios), ", "))
	}
	names := strings.Split(sel, ",")
	if sel == "all" {
		names = sortedKeys(scenarios)
	}
	for _, n := range names {
		if scenarios[n] == nil {
			t.Fatalf("KSBOOT_E2E: no scenario %q; have %s", n, strings.Join(sortedKeys(scenarios), ", "))
		}
	}
	var selected []*Scenario
	for _, n := range names {
		selected = append(selected, scenarios[n])
	}
	start := time.Now()
	env := Prepare(t, selected...)
	t.Logf("suite prepared in %s (agent, guest image, bundle)", time.Since(start).Round(time.Second))
	if os.Getenv("KSBOOT_E2E_PREPARE_ONLY") != "" {
		// hack/ci-e2e.sh builds first, then decides from the time left whether a scenario fits.
		t.Logf("KSBOOT_E2E_PREPARE_ONLY: prepared for %s; not running them", strings.Join(names, ", "))
		return
	}
	results := map[string]time.Duration{}
	for _, n := range names {
		t.Run(n, func(t *testing.T) {
			r := RunScenario(t, env, scenarios[n])
			results[n] = r
		})
	}
	if b, k := results["baseline"], results["mdns-cluster"]; b > 0 && k > 0 {
		t.Logf("ksboot (mdns-cluster) power-on → all Nodes Ready %s, baseline %s: ratio %.2f", k.Round(time.Second), b.Round(time.Second), k.Seconds()/b.Seconds())
	}
}

func sortedKeys[V any](m map[string]V) []string {
	out := slices.Collect(mapKeys(m))
	slices.Sort(out)
	return out
}
