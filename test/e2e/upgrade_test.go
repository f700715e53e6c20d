package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/ksboot/ksboot/bootstrap/upgrade"
)

// The suite reads the table `ksboot upgrade status` prints; this keeps the two in step.
func TestParseUpgradeTable(t *testing.T) {
	now := time.Date(2026, 12, 7, 5, 0, 0, 0, time.UTC)
	p := &upgrade.Plan{Target: "v1.27.16", From: "v1.26.5", Order: []string{"cp1", "worker-1a2b"}, Requested: now.Add(-time.Hour)}
	var b strings.Builder
	upgrade.WriteTable(&b, p, []upgrade.NodeState{
		{Node: "cp1", Role: "control-plane", Version: "v1.27.16", Ready: true, Status: upgrade.Status{Target: "v1.27.16", Step: upgrade.StepDone, Since: now.Add(-time.Minute)}},
		{Node: "worker-1a2b", Role: "worker", Version: "v1.26.5", Ready: false,
			Status: upgrade.Status{Target: "v1.27.16", Step: upgrade.StepFailed, Detail: "kubeadm upgrade node: exit status 1:\n[upgrade] FATAL:\ttimed out", Since: now.Add(-time.Second)}},
		{Node: "w3", Role: "worker", Version: "v1.26.5", Ready: true},
	}, now)
	rows := parseUpgradeTable(b.String())
	want := map[string]upgradeRow{
		"cp1":         {Role: "control-plane", Version: "v1.27.16", Ready: "true", Step: "done"},
		"worker-1a2b": {Role: "worker", Version: "v1.26.5", Ready: "false", Step: "failed", Detail: "kubeadm upgrade node: exit status 1: [upgrade] FATAL: timed out"},
		"w3":          {Role: "worker", Version: "v1.26.5", Ready: "true", Step: "-"},
	}
	if len(rows) != len(want) {
		t.Fatalf("parsed %d rows, want %d:\n%s", len(rows), len(want), b.String())
	}
	for n, w := range want {
		if rows[n] != w {
			t.Errorf("row %s = %+v, want %+v\n%s", n, rows[n], w, b.String())
		}
	}
}

func TestWorkloadsLost(t *testing.T) {
	before := workloads{"static/kube-apiserver-cp1": 1, "daemonset/kube-proxy@cp1": 1, "deployment/coredns": 2}
	after := workloads{"static/kube-apiserver-cp1": 1, "daemonset/kube-proxy@cp1": 0, "deployment/coredns": 2, "deployment/new": 1}
	lost := before.lost(after)
	if strings.Join(lost, "; ") != "daemonset/kube-proxy@cp1 (0 of 1)" {
		t.Errorf("lost = %q", lost)
	}
	if l := before.lost(before); len(l) != 0 {
		t.Errorf("nothing lost, got %q", l)
	}
}
