package bootstrap

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/ksboot/ksboot/bootstrap/host"
	"github.com/ksboot/ksboot/bootstrap/host/hosttest"
	"github.com/ksboot/ksboot/bootstrap/kubeadm"
	"github.com/ksboot/ksboot/bootstrap/state"
	"github.com/ksboot/ksboot/cluster"
)

// TestKubeadmPhaseWaitsForEarlierControlPlanes: a joining control plane waits for the ones
// before it before any kubeadm command runs (here the wait fails at once, as no endpoint was
// discovered), and one whose join had finished before a restart does not wait at all.
func TestKubeadmPhaseWaitsForEarlierControlPlanes(t *testing.T) {
	c := lbCluster(cluster.InternalLBKubeVIP)
	s, err := cluster.NewSecrets()
	if err != nil {
		t.Fatal(err)
	}
	nc, err := cluster.NodeConfigFor(c, s, "node2")
	if err != nil {
		t.Fatal(err)
	}
	node := func(t *testing.T) (*Node, *hosttest.Stub) {
		stub := hosttest.NewStub(t)
		return &Node{Config: nc, Name: "node2", Root: host.Root(t.TempDir()), Exec: stub, Console: &bytes.Buffer{},
			Journal: io.Discard, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Status: &state.Status{}}, stub
	}

	t.Run("not joined yet", func(t *testing.T) {
		n, stub := node(t)
		err := runKubeadm(context.Background(), n)
		if err == nil || !strings.Contains(err.Error(), "API endpoint that the discover phase verifies") {
			t.Fatalf("want the wait to fail for want of an endpoint, got %v", err)
		}
		if len(stub.Calls) > 0 {
			t.Errorf("ran %q before the wait", stub.Calls)
		}
	})
	t.Run("joined before a restart", func(t *testing.T) {
		n, _ := node(t)
		for _, f := range []string{kubeadm.DoneMarker, kubeadm.AdminConf} {
			if _, err := n.Root.WriteFile(f, []byte("x\n"), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		if err := runKubeadm(context.Background(), n); err != nil {
			t.Fatalf("a control plane that had joined waited or failed: %v", err)
		}
	})
}
