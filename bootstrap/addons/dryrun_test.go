package addons

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/ksboot/ksboot/cluster"
)

// refusingSource fails every fetch, so a DryRun that fetched would fail the test.
type refusingSource struct{ HTTPSource }

func (refusingSource) Fetch(context.Context, Artifact) ([]byte, error) {
	return nil, errors.New("a dry run fetched an artifact")
}

func TestDryRun(t *testing.T) {
	for _, tc := range []struct {
		name      string
		change    func(*cluster.Cluster)
		wantFiles []string
		wantFrom  string // Fetch.From of Calico's manifest; "" means no fetch
	}{
		{"calico upstream", nil, []string{StorageFile}, CalicoManifest.URL},
		{"calico from a mirror", func(c *cluster.Cluster) { c.Spec.Artifacts.Mirror = "http://10.1.2.3/m/" },
			[]string{StorageFile}, "http://10.1.2.3/m/raw.githubusercontent.com/projectcalico/calico/" + CalicoVersion + "/manifests/calico.yaml"},
		{"flannel is generated", func(c *cluster.Cluster) { c.Spec.Network.Plugin = "flannel" }, []string{CNIFile, StorageFile}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := testCluster(t, tc.change)
			dir := t.TempDir()
			// A cni.yaml of an earlier dry run with another plugin must not survive a Calico one.
			if err := os.WriteFile(filepath.Join(dir, CNIFile), []byte("stale"), 0o644); err != nil {
				t.Fatal(err)
			}
			paths, fetches, err := DryRun(context.Background(), dir, Options{Cluster: c,
				CalicoSource: refusingSource{HTTPSource{Mirror: c.Spec.Artifacts.Mirror}}})
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, p := range paths {
				got = append(got, filepath.Base(p))
				if info, err := os.Stat(p); err != nil || info.Size() == 0 {
					t.Errorf("%s: not written (%v)", p, err)
				}
			}
			if len(got) != len(tc.wantFiles) || got[0] != tc.wantFiles[0] || got[len(got)-1] != tc.wantFiles[len(tc.wantFiles)-1] {
				t.Errorf("written %v, want %v", got, tc.wantFiles)
			}
			if tc.wantFrom == "" {
				if len(fetches) != 0 {
					t.Errorf("fetches %+v, want none", fetches)
				}
				return
			}
			if len(fetches) != 1 || fetches[0].From != tc.wantFrom || fetches[0].Artifact.SHA256 != CalicoManifest.SHA256 ||
				fetches[0].Component != "cni" || fetches[0].File != CNIFile {
				t.Errorf("fetches %+v, want Calico's manifest from %s", fetches, tc.wantFrom)
			}
			if _, err := os.Stat(filepath.Join(dir, CNIFile)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("%s is still there (%v): it would show a CNI the cluster does not select", CNIFile, err)
			}
		})
	}
}
