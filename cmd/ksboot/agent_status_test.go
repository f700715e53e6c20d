package main

import (
	"strings"
	"testing"
	"time"

	"github.com/ksboot/ksboot/bootstrap/state"
)

// TestAgentStatusShowsRetry: `ksboot agent status` says which phase keeps failing and when the
// agent tries it again, so an operator at the console knows why the node seems idle.
func TestAgentStatusShowsRetry(t *testing.T) {
	root := t.TempDir()
	failed := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	st := &state.Status{Cluster: "sample", Node: "node1", Phase: "kubeadm", Error: "phase kubeadm failed: boom",
		Retry: &state.Retry{Phase: "kubeadm", Failures: 3, Failed: failed}}
	if err := state.Write(root, st); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := ksboot(t, "agent", "status", "--root", root)
	if code != 0 {
		t.Fatalf("agent status: exit %d\n%s%s", code, out, errOut)
	}
	if want := "phase kubeadm failed on 3 run(s) in a row, last at 2026-12-05T12:00:00Z; retried 2m0s after that\n"; !strings.Contains(out, want) {
		t.Errorf("agent status lacks %q:\n%s", want, out)
	}
	code, out, _ = ksboot(t, "agent", "status", "--root", root, "-o", "json")
	if code != 0 || !strings.Contains(out, `"retry": {`) || !strings.Contains(out, `"failures": 3`) {
		t.Errorf("agent status -o json: exit %d\n%s", code, out)
	}
}
