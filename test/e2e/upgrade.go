package e2e

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// expectUpgrade upgrades the formed cluster as an admin would: `ksboot upgrade --to` (run on
// the segment with an admin kubeconfig) records the target, and the nodes' agents do the rest.
// It follows `ksboot upgrade status` until every node of the plan is done, then checks the
// outcome through the API server: every Node Ready with a kubelet of u.To, the API server at
// u.To, and every kube-system workload of before the upgrade running again.
func (r *run) expectUpgrade(ctx context.Context, ce *ClusterExpect, u *UpgradeExpect) {
	t := r.t
	within, cancel := context.WithTimeout(ctx, u.Within.Duration)
	defer cancel()
	start := time.Now()
	since := func() string { return time.Since(start).Round(time.Second).String() }
	kubeconfig := r.kubeconfig(ce.Cluster)
	guestOf := r.guestsByNode(ce.Nodes)

	before, err := r.kubeSystemWorkloads(within, kubeconfig)
	if err != nil {
		t.Errorf("upgrade: reading kube-system before the upgrade: %v", err)
		return
	}
	t.Logf("upgrade: kube-system before: %s", before)

	cctx, ccancel := context.WithTimeout(within, 2*time.Minute)
	out, err := r.seg.Command(cctx, r.env.Bin, "upgrade", "--to", u.To, "--kubeconfig", kubeconfig).CombinedOutput()
	ccancel()
	t.Logf("upgrade: ksboot upgrade --to %s:\n%s", u.To, out)
	if err != nil {
		t.Errorf("upgrade: ksboot upgrade --to %s: %v", u.To, err)
		return
	}

	// Follow the plan. A failed step is not the end: the node's agent tries it again after
	// five minutes, and the check is what the cluster looks like within u.Within.
	var last map[string]upgradeRow
	err = r.poll(within, apiPollEvery, "every node to finish its upgrade to "+u.To, func() (bool, string) {
		cctx, ccancel := context.WithTimeout(within, time.Minute)
		defer ccancel()
		out, err := r.seg.Command(cctx, r.env.Bin, "upgrade", "status", "--kubeconfig", kubeconfig).CombinedOutput()
		if err != nil {
			return false, fmt.Sprintf("ksboot upgrade status: %v: %s", err, lastLine(string(out)))
		}
		rows := parseUpgradeTable(string(out))
		for _, n := range slices.Sorted(maps.Keys(rows)) {
			row := rows[n]
			if prev, ok := last[n]; ok && prev.Step == row.Step && prev.Version == row.Version {
				continue
			}
			g := guestOf[n]
			if g == "" {
				g = n
			}
			r.times.note(g, fmt.Sprintf("upgrade: %s at %s, %s after ksboot upgrade (%s)", row.Step, row.Version, since(), row.Detail))
			t.Logf("upgrade: %s: step %s, kubelet %s, Ready %s, %s: %s", n, row.Step, row.Version, row.Ready, since(), row.Detail)
		}
		last = rows
		if len(rows) < len(ce.Nodes) {
			return false, fmt.Sprintf("the table shows %d nodes, the cluster has %d:\n%s", len(rows), len(ce.Nodes), out)
		}
		for _, n := range slices.Sorted(maps.Keys(rows)) {
			row := rows[n]
			if row.Step != "done" || row.Version != u.To || row.Ready != "true" {
				return false, fmt.Sprintf("%s: step %s, kubelet %s, Ready %s: %s", n, row.Step, row.Version, row.Ready, row.Detail)
			}
		}
		return true, ""
	})
	if err != nil {
		t.Errorf("upgrade: %v", err)
		return
	}
	t.Logf("upgrade: every node done at %s, %s after ksboot upgrade", u.To, since())

	// The API server's own word: Nodes and their kubelets, and the server's version.
	var version struct {
		ServerVersion struct{ GitVersion string } `json:"serverVersion"`
	}
	if err := r.kubectl(within, kubeconfig, &version, "version", "-o", "json"); err != nil {
		t.Errorf("upgrade: %v", err)
	} else if version.ServerVersion.GitVersion != u.To {
		t.Errorf("upgrade: the API server is at %s, want %s", version.ServerVersion.GitVersion, u.To)
	}
	var nodes struct {
		Items []struct {
			Metadata struct{ Name string }
			Spec     struct{ Unschedulable bool }
			Status   struct {
				NodeInfo   struct{ KubeletVersion string } `json:"nodeInfo"`
				Conditions []struct{ Type, Status string }
			}
		}
	}
	if err := r.kubectl(within, kubeconfig, &nodes, "get", "nodes", "-o", "json"); err != nil {
		t.Errorf("upgrade: %v", err)
	} else {
		for _, n := range nodes.Items {
			ready := slices.ContainsFunc(n.Status.Conditions, func(c struct{ Type, Status string }) bool { return c.Type == "Ready" && c.Status == "True" })
			if n.Status.NodeInfo.KubeletVersion != u.To || !ready || n.Spec.Unschedulable {
				t.Errorf("upgrade: Node %s: kubelet %s, Ready %v, cordoned %v; want %s, Ready, uncordoned",
					n.Metadata.Name, n.Status.NodeInfo.KubeletVersion, ready, n.Spec.Unschedulable, u.To)
			}
		}
		if len(nodes.Items) != len(ce.Nodes) {
			t.Errorf("upgrade: %d Nodes after the upgrade, want %d", len(nodes.Items), len(ce.Nodes))
		}
	}

	// No pod of kube-system lost: every workload of before has as many pods Running and
	// ready again. Pods replaced by the upgrade (new kube-proxy, CoreDNS) take a moment.
	err = r.poll(within, apiPollEvery, "kube-system's pods to run again", func() (bool, string) {
		after, err := r.kubeSystemWorkloads(within, kubeconfig)
		if err != nil {
			return false, err.Error()
		}
		if lost := before.lost(after); len(lost) > 0 {
			return false, "not running again: " + strings.Join(lost, ", ")
		}
		return true, ""
	})
	if err != nil {
		t.Errorf("upgrade: %v", err)
		return
	}
	t.Logf("upgrade: kube-system lost no pod; done %s after ksboot upgrade", since())
	r.times.note(ce.Nodes[0], "upgrade to "+u.To+" complete "+since()+" after ksboot upgrade")
}

// upgradeRow is one node's line of `ksboot upgrade status`.
type upgradeRow struct{ Role, Version, Ready, Step, Detail string }

// parseUpgradeTable reads the table upgrade.WriteTable prints: a title line, then
// NODE ROLE VERSION READY STEP FOR DETAIL (DETAIL may hold spaces).
func parseUpgradeTable(out string) map[string]upgradeRow {
	rows := map[string]upgradeRow{}
	header := false
	for line := range strings.Lines(out) {
		f := strings.Fields(line)
		if len(f) >= 2 && f[0] == "NODE" && f[1] == "ROLE" {
			header = true
			continue
		}
		if !header || len(f) < 6 {
			continue
		}
		rows[f[0]] = upgradeRow{Role: f[1], Version: f[2], Ready: f[3], Step: f[4], Detail: strings.Join(f[6:], " ")}
	}
	return rows
}

// workloads counts the Running and ready pods of a namespace by what keeps them: a static
// pod by its name, a DaemonSet's pods by DaemonSet and node, a ReplicaSet's by the Deployment
// it belongs to (the ReplicaSet's name without its template hash, which an upgrade changes).
type workloads map[string]int

func (w workloads) String() string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(w)) {
		parts = append(parts, fmt.Sprintf("%s=%d", k, w[k]))
	}
	return strings.Join(parts, " ")
}

// lost lists the workloads of w that after has fewer running pods of.
func (w workloads) lost(after workloads) []string {
	var out []string
	for _, k := range slices.Sorted(maps.Keys(w)) {
		if after[k] < w[k] {
			out = append(out, fmt.Sprintf("%s (%d of %d)", k, after[k], w[k]))
		}
	}
	return out
}

func (r *run) kubeSystemWorkloads(ctx context.Context, kubeconfig string) (workloads, error) {
	var list struct {
		Items []struct {
			Metadata struct {
				Name            string
				OwnerReferences []struct{ Kind, Name string } `json:"ownerReferences"`
			}
			Spec   struct{ NodeName string } `json:"spec"`
			Status struct {
				Phase             string
				ContainerStatuses []struct{ Ready bool } `json:"containerStatuses"`
			}
		}
	}
	if err := r.kubectl(ctx, kubeconfig, &list, "get", "pods", "-n", "kube-system", "-o", "json"); err != nil {
		return nil, err
	}
	w := workloads{}
	for _, p := range list.Items {
		key := "pod/" + p.Metadata.Name
		for _, o := range p.Metadata.OwnerReferences {
			switch o.Kind {
			case "Node":
				key = "static/" + p.Metadata.Name
			case "DaemonSet":
				key = "daemonset/" + o.Name + "@" + p.Spec.NodeName
			case "ReplicaSet":
				name := o.Name
				if i := strings.LastIndexByte(name, '-'); i > 0 {
					name = name[:i]
				}
				key = "deployment/" + name
			}
		}
		running := p.Status.Phase == "Running" && len(p.Status.ContainerStatuses) > 0 &&
			!slices.ContainsFunc(p.Status.ContainerStatuses, func(c struct{ Ready bool }) bool { return !c.Ready })
		if _, ok := w[key]; !ok {
			w[key] = 0
		}
		if running {
			w[key]++
		}
	}
	return w, nil
}

// guestsByNode maps Node names to guests by the agent's first console line (a generic
// worker's Node is named after its machine).
func (r *run) guestsByNode(guests []string) map[string]string {
	m := map[string]string{}
	for _, g := range guests {
		if s := agentStart.FindStringSubmatch(r.guest(g).SerialLog()); s != nil {
			m[s[1]] = g
		}
	}
	return m
}
