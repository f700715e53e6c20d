package kubesphere

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/ksboot/ksboot/bootstrap/install/artifacts"
	"github.com/ksboot/ksboot/bootstrap/install/artifacts/artifactstest"
)

// TestLoadChartFromBundle: a chart URL is answered from a mounted bundle whose manifest lists
// the chart under charts/<file name of the URL>, checked against its sha256; without such an
// entry the chart is downloaded.
func TestLoadChartFromBundle(t *testing.T) {
	data := packChart(t)
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Write(data)
	}))
	t.Cleanup(srv.Close)
	url := srv.URL + "/main/ks-core-1.1.4.tgz"

	bundle := func(t *testing.T, content []byte, list bool) string {
		dir := t.TempDir()
		if err := os.MkdirAll(filepath.Join(dir, ChartsDir), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, ChartsDir, "ks-core-1.1.4.tgz"), content, 0o644); err != nil {
			t.Fatal(err)
		}
		m := &artifacts.Manifest{FormatVersion: artifacts.ManifestFormatVersion}
		if list {
			m.Artifacts = []artifacts.Entry{{Name: "ks-core", Version: "1.1.4", Kind: artifacts.KindChart,
				Path: "charts/ks-core-1.1.4.tgz", SHA256: artifactstest.SHA256(data)}}
		}
		out, err := m.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, artifacts.ManifestFile), out, 0o644); err != nil {
			t.Fatal(err)
		}
		return dir
	}

	tests := []struct {
		name     string
		bundle   string
		wantHits int32
		wantErr  string
	}{
		{name: "listed", bundle: bundle(t, data, true), wantHits: 0},
		{name: "not listed", bundle: bundle(t, data, false), wantHits: 1},
		{name: "not a bundle", bundle: t.TempDir(), wantHits: 1},
		{name: "tampered", bundle: bundle(t, append([]byte("x"), data...), true), wantErr: "sha256 mismatch"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			hits.Store(0)
			ch, err := LoadChart(context.Background(), url, tc.bundle, srv.Client())
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if ch.Name() != "ks-core" || hits.Load() != tc.wantHits {
				t.Errorf("chart %s, %d downloads; want ks-core, %d", ch.Name(), hits.Load(), tc.wantHits)
			}
		})
	}
}

func TestBundleChartPath(t *testing.T) {
	for url, want := range map[string]string{
		"https://charts.example.com/main/ks-core-1.1.4.tgz":     "charts/ks-core-1.1.4.tgz",
		"http://10.0.0.5/k8s/charts/ks-core-1.1.4.tgz?x=1#frag": "charts/ks-core-1.1.4.tgz",
	} {
		if got, err := BundleChartPath(url); err != nil || got != want {
			t.Errorf("BundleChartPath(%s) = %q, %v; want %q", url, got, err, want)
		}
	}
	if _, err := BundleChartPath("https://charts.example.com/"); err == nil {
		t.Error("a URL without a file name was accepted")
	}
}
