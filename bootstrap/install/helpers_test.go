package install

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/ksboot/ksboot/bootstrap/host"
	"github.com/ksboot/ksboot/bootstrap/host/hosttest"
	"github.com/ksboot/ksboot/bootstrap/install/artifacts"
	"github.com/ksboot/ksboot/bootstrap/workflow"
	"github.com/ksboot/ksboot/cluster"
)

const k8sVersion = "v1.37.2"

var debian12 = host.OS{ID: "debian", VersionID: "12", Pretty: "Debian GNU/Linux 12 (bookworm)"}

// fixture is one node: a temporary root, a command stub, and options pointing at both.
type fixture struct {
	root    host.Root
	stub    *hosttest.Stub
	console *bytes.Buffer
	opts    Options
}

func newFixture(t *testing.T, edit func(c *cluster.Cluster)) *fixture {
	t.Helper()
	nc := &cluster.NodeConfig{
		APIVersion: cluster.APIVersion, Kind: cluster.NodeConfigKind,
		Node: cluster.NodeInfo{Name: "node1", Roles: []string{cluster.RoleControlPlane, cluster.RoleWorker}, Init: true},
		Cluster: cluster.Cluster{
			APIVersion: cluster.APIVersion, Kind: cluster.Kind,
			Metadata: cluster.Metadata{Name: "sample"},
			Spec: cluster.Spec{
				Hosts:      []cluster.Host{{Name: "node1", Address: "192.168.0.11/24"}},
				RoleGroups: cluster.RoleGroups{ControlPlane: []string{"node1"}, Worker: []string{"node1"}},
				Kubernetes: cluster.Kubernetes{Version: k8sVersion},
			},
		},
	}
	if edit != nil {
		edit(&nc.Cluster)
	}
	cluster.SetDefaults(&nc.Cluster)
	f := &fixture{root: host.Root(t.TempDir()), stub: hosttest.NewStub(t), console: &bytes.Buffer{}}
	f.opts = Options{Root: f.root, Exec: f.stub, Config: nc, OS: debian12, Arch: "amd64", Console: f.console}
	return f
}

// fileState is what a tree comparison looks at.
type fileState struct {
	mode fs.FileMode
	sum  string
}

// tree lists every path under root with its mode and, for files, the sha256 of its content.
func tree(t *testing.T, root host.Root) map[string]fileState {
	t.Helper()
	out := map[string]fileState{}
	err := filepath.WalkDir(string(root), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(string(root), p)
		st := fileState{mode: info.Mode()}
		if info.Mode().IsRegular() {
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			s := sha256.Sum256(data)
			st.sum = hex.EncodeToString(s[:])
		}
		out["/"+filepath.ToSlash(rel)] = st
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func diffTrees(a, b map[string]fileState) []string {
	var diffs []string
	for p, s := range a {
		if o, ok := b[p]; !ok {
			diffs = append(diffs, "only in the first: "+p)
		} else if o != s {
			diffs = append(diffs, fmt.Sprintf("%s: %v %s vs %v %s", p, s.mode, s.sum, o.mode, o.sum))
		}
	}
	for p := range b {
		if _, ok := a[p]; !ok {
			diffs = append(diffs, "only in the second: "+p)
		}
	}
	sort.Strings(diffs)
	return diffs
}

// noTemps fails if any temporary file of this package is left under root.
func noTemps(t *testing.T, root host.Root) {
	t.Helper()
	for p := range tree(t, root) {
		if strings.HasPrefix(filepath.Base(p), artifacts.TempPrefix) {
			t.Errorf("left a temporary file: %s", p)
		}
	}
}

// checkOneLine checks an error is one line, contains every want, and carries a hint.
func checkOneLine(t *testing.T, err error, wants ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want one containing %q", wants)
	}
	msg := err.Error()
	if strings.Contains(msg, "\n") {
		t.Errorf("error is not one line: %q", msg)
	}
	for _, w := range wants {
		if !strings.Contains(msg, w) {
			t.Errorf("error %q does not contain %q", msg, w)
		}
	}
	var h *workflow.Hinted
	if !errors.As(err, &h) || h.Hint == "" {
		t.Errorf("error %q carries no hint", msg)
	}
}
