package bootstrap

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ksboot/ksboot/bootstrap/state"
	"github.com/ksboot/ksboot/cluster"
)

func writeNodeConfig(t *testing.T, root string, generic bool) {
	t.Helper()
	c := cluster.Sample(cluster.SampleOptions{})
	s, err := cluster.NewSecrets()
	if err != nil {
		t.Fatal(err)
	}
	var nc *cluster.NodeConfig
	if generic {
		nc, err = cluster.GenericWorkerConfig(c, s)
	} else {
		nc, err = cluster.NodeConfigFor(c, s, "node1")
	}
	if err != nil {
		t.Fatal(err)
	}
	data, err := nc.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if err := state.WriteFileAtomic(filepath.Join(root, "etc/ksboot/node.yaml"), data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestRunRecordsIdentity(t *testing.T) {
	root := t.TempDir()
	writeNodeConfig(t, root, false)
	var console bytes.Buffer
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	id, err := Run(context.Background(), Options{
		ConfigPath: "/etc/ksboot/node.yaml", Root: root, Version: "v9.9.9", Console: &console, DryRun: true, Only: "os",
		Interfaces: func() ([]string, error) { return []string{"192.168.0.11/24"}, nil },
		Now:        func() time.Time { return now },
	})
	if err != nil {
		t.Fatal(err)
	}
	if id.Node != "node1" || !id.Init || strings.Join(id.Roles, ",") != "etcd,control-plane" {
		t.Errorf("identity %+v", id)
	}
	if want := "ksboot v9.9.9: node node1, role etcd+control-plane, cluster sample, addresses 192.168.0.11/24\n"; !strings.HasPrefix(console.String(), want) {
		t.Errorf("console %q, want it to start with %q", console.String(), want)
	}
	if !strings.Contains(console.String(), "would run: hostname node1\n") {
		t.Errorf("dry run did not print the commands:\n%s", console.String())
	}
	st, err := state.Read(root)
	if err != nil || st == nil {
		t.Fatalf("status: %v %v", st, err)
	}
	if st.Node != "node1" || st.Version != "v9.9.9" || !st.Updated.Equal(now) || st.Phases[0].Name != "os" {
		t.Errorf("status %+v", st)
	}
	info, _ := os.Stat(filepath.Join(root, state.StatusFile))
	if info.Mode().Perm() != 0o600 {
		t.Errorf("status.json mode %o", info.Mode().Perm())
	}
}

func TestGenericWorkerNameFromMachineID(t *testing.T) {
	root := t.TempDir()
	writeNodeConfig(t, root, true)
	if _, err := Run(context.Background(), Options{ConfigPath: "/etc/ksboot/node.yaml", Root: root, DryRun: true, Only: "os"}); err == nil ||
		!strings.Contains(err.Error(), "machine-id") {
		t.Fatalf("want a machine-id error, got %v", err)
	}
	if err := os.WriteFile(filepath.Join(root, "etc/machine-id"), []byte("0123456789abcdef0123456789abcdef\n"), 0o444); err != nil {
		t.Fatal(err)
	}
	id, err := Run(context.Background(), Options{ConfigPath: "/etc/ksboot/node.yaml", Root: root, DryRun: true, Only: "os",
		Interfaces: func() ([]string, error) { return nil, nil }})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(id.Node, "worker-") || len(id.Node) != len("worker-")+10 {
		t.Errorf("derived name %q", id.Node)
	}
	again, _ := Run(context.Background(), Options{ConfigPath: "/etc/ksboot/node.yaml", Root: root, DryRun: true, Only: "os",
		Interfaces: func() ([]string, error) { return nil, nil }})
	if again.Node != id.Node {
		t.Error("derived name is not stable")
	}
}

func TestRunRejectsBadConfig(t *testing.T) {
	root := t.TempDir()
	if err := state.WriteFileAtomic(filepath.Join(root, "etc/ksboot/node.yaml"), []byte("kind: NodeConfig\nbogus: 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Run(context.Background(), Options{ConfigPath: "/etc/ksboot/node.yaml", Root: root, DryRun: true})
	if err == nil || !strings.Contains(err.Error(), "node.yaml:2: bogus: unknown field") {
		t.Fatalf("got %v", err)
	}
	if _, statErr := os.Stat(filepath.Join(root, state.StatusFile)); statErr == nil {
		t.Error("status written for an invalid config")
	}
}
