package e2e

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"
)

// agentStart is the agent's first console line, which names the node ("ksboot v0.0.0-e2e: node
// worker-1a2b3c4d5e, role worker, ..."): a generic worker's name comes from its machine-id.
var agentStart = regexp.MustCompile(`ksboot \S+: node (\S+), role `)

// resetDone is the day-two agent's console line once it has reset the machine on request.
var resetDone = regexp.MustCompile(`ksboot: reset done on request of ksboot node delete`)

// expectDeleteNode removes the guest's Node with `ksboot node delete` (run where an admin would,
// on the segment, with an admin kubeconfig), waits for the machine to report its reset on the
// console, switches it off and on again with its seed still attached, and waits until it is a
// Ready Node again: the seed applies again after a reset (cloud-init clean), and the node
// rejoins under the same name.
func (r *run) expectDeleteNode(ctx context.Context, ce *ClusterExpect, d *DeleteNodeExpect) {
	t := r.t
	g := r.guest(d.Guest)
	m := agentStart.FindStringSubmatch(g.SerialLog())
	if m == nil {
		t.Errorf("delete node: guest %s's console never named its node (%q)", d.Guest, agentStart)
		return
	}
	name := m[1]
	within, cancel := context.WithTimeout(ctx, d.Within.Duration)
	defer cancel()
	start := time.Now()
	since := func() string { return time.Since(start).Round(time.Second).String() }

	kubeconfig := r.kubeconfig(ce.Cluster)
	cctx, ccancel := context.WithTimeout(within, 20*time.Minute)
	cmd := r.seg.Command(cctx, r.env.Bin, "node", "delete", name, "--kubeconfig", kubeconfig, "-f", r.clusters[ce.Cluster])
	out, err := cmd.CombinedOutput()
	ccancel()
	t.Logf("delete node: ksboot node delete %s (%s):\n%s", name, since(), out)
	if err != nil {
		t.Errorf("delete node: ksboot node delete %s: %v", name, err)
		return
	}
	if !strings.Contains(string(out), "its machine is resetting itself") {
		t.Errorf("delete node: the machine was not reset through its agent: %s", lastLine(string(out)))
		return
	}
	r.times.note(d.Guest, fmt.Sprintf("node delete done %s after it began", since()))

	err = r.poll(within, pollEvery, "guest "+d.Guest+" to report its reset", func() (bool, string) {
		log := g.SerialLog()
		return resetDone.MatchString(log), lastLine(log)
	})
	if err != nil {
		t.Errorf("delete node: %v", err)
		return
	}
	r.times.note(d.Guest, "machine reset "+since()+" after node delete began")
	nodes, err := r.kubectlNodes(within, kubeconfig)
	if err != nil {
		t.Errorf("delete node: listing Nodes after the reset: %v", err)
		return
	}
	if slices.ContainsFunc(nodes, func(n nodeState) bool { return n.Name == name }) {
		t.Errorf("delete node: Node %s is still there after its machine was reset: %v", name, nodes)
		return
	}

	g.HardReset(t)
	r.times.note(d.Guest, "switched off and on again "+since()+" after node delete began")
	err = r.poll(within, apiPollEvery, "Node "+name+" to be Ready again", func() (bool, string) {
		nodes, err := r.kubectlNodes(within, kubeconfig)
		if err != nil {
			return false, err.Error()
		}
		for _, n := range nodes {
			if n.Name == name {
				return n.Ready == "True", fmt.Sprintf("%s Ready=%s", name, n.Ready)
			}
		}
		return false, "no Node " + name + " yet; console: " + lastLine(g.SerialLog())
	})
	if err != nil {
		t.Errorf("delete node: %v", err)
		return
	}
	t.Logf("delete node: %s rejoined, Ready %s after node delete began", name, since())
	r.times.note(d.Guest, "Ready again "+since()+" after node delete began")
}
