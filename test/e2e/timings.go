package e2e

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// phases are the agent's phases in order: the columns of the timing table.
var phases = []string{"preflight", "os", "install", "discover", "kubeadm", "addons", "kubesphere"}

// timings records, per guest, when each phase ended (first seen on the serial console,
// measured from that guest's power-on, to within pollEvery) and the cluster's time to Ready.
type timings struct {
	mu     sync.Mutex
	ends   map[string]map[string]time.Duration // guest → phase → end
	failed map[string]map[string]bool
	notes  map[string][]string
	ready  time.Duration
}

func newTimings() *timings {
	return &timings{ends: map[string]map[string]time.Duration{}, failed: map[string]map[string]bool{}, notes: map[string][]string{}}
}

// saw records a phase end the first time it is seen. A phase that failed and later ended
// (after a restart) keeps the later, successful end.
func (tm *timings) saw(guest, phase string, at time.Duration, failed bool) {
	tm.mu.Lock()
	defer tm.mu.Unlock()
	if tm.ends[guest] == nil {
		tm.ends[guest], tm.failed[guest] = map[string]time.Duration{}, map[string]bool{}
	}
	if _, ok := tm.ends[guest][phase]; ok && (failed || !tm.failed[guest][phase]) {
		return
	}
	tm.ends[guest][phase], tm.failed[guest][phase] = at, failed
}

func (tm *timings) note(guest, text string) {
	tm.mu.Lock()
	defer tm.mu.Unlock()
	tm.notes[guest] = append(tm.notes[guest], text)
}

func (tm *timings) clusterReady(d time.Duration) {
	tm.mu.Lock()
	defer tm.mu.Unlock()
	if tm.ready == 0 {
		tm.ready = d
	}
}

// Ready is the time from the first power-on to all Nodes Ready; zero if never.
func (tm *timings) Ready() time.Duration {
	tm.mu.Lock()
	defer tm.mu.Unlock()
	return tm.ready
}

// table renders the timing table: per guest, seconds from its power-on to each phase's end
// ("!" marks a failure), and the cluster's power-on → all Nodes Ready.
func (tm *timings) table(sc *Scenario, starts map[string]time.Duration) string {
	tm.mu.Lock()
	defer tm.mu.Unlock()
	var b strings.Builder
	fmt.Fprintf(&b, "scenario %s — seconds from each guest's power-on to the end of each phase (! = failed)\n", sc.Name)
	fmt.Fprintf(&b, "%-8s %8s", "guest", "on at")
	for _, p := range phases {
		fmt.Fprintf(&b, " %10s", p)
	}
	b.WriteString("\n")
	for _, g := range sc.Guests {
		fmt.Fprintf(&b, "%-8s %7.0fs", g.Name, starts[g.Name].Seconds())
		for _, p := range phases {
			cell := "-"
			if d, ok := tm.ends[g.Name][p]; ok {
				cell = fmt.Sprintf("%.0f", d.Seconds())
				if tm.failed[g.Name][p] {
					cell += "!"
				}
			}
			fmt.Fprintf(&b, " %10s", cell)
		}
		b.WriteString("\n")
	}
	for _, g := range sc.Guests {
		for _, n := range tm.notes[g.Name] {
			fmt.Fprintf(&b, "%s: %s\n", g.Name, n)
		}
	}
	if tm.ready > 0 {
		fmt.Fprintf(&b, "first power-on → all Nodes Ready: %.0f s\n", tm.ready.Seconds())
	} else {
		b.WriteString("first power-on → all Nodes Ready: not reached\n")
	}
	return b.String()
}

func (tm *timings) print(t *testing.T, sc *Scenario, starts map[string]time.Duration) {
	t.Logf("\n%s", tm.table(sc, starts))
}
