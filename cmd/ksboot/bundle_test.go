package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ksboot/ksboot/bootstrap/install/artifacts"
	"github.com/ksboot/ksboot/bootstrap/install/artifacts/artifactstest"
)

// bundleCLI runs `ksboot bundle ARGS` in-process through its cobra command (registration in
// the root command is tested with the other commands).
func bundleCLI(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	cmd := newBundleCmd(&streams{in: strings.NewReader(""), out: &out, err: &errOut})
	cmd.SetArgs(args)
	cmd.SetOut(&errOut)
	cmd.SetErr(&errOut)
	cmd.SilenceErrors, cmd.SilenceUsage = true, true
	cmd.SetContext(context.Background())
	if err := cmd.Execute(); err != nil {
		errOut.WriteString("error: " + err.Error() + "\n")
		return exitCode(err), out.String(), errOut.String()
	}
	return 0, out.String(), errOut.String()
}

func clusterWithMirror(t *testing.T, dir, mirror string) string {
	t.Helper()
	file := filepath.Join(dir, "cluster.yaml")
	data := `apiVersion: ksboot.dev/v1alpha1
kind: Cluster
metadata: {name: bundletest}
spec:
  hosts:
    - {name: cp1, address: 10.0.0.10/24}
  roleGroups: {etcd: [cp1], control-plane: [cp1]}
  kubernetes: {version: v1.37.2}
  artifacts: {mirror: "` + mirror + `"}
`
	if err := os.WriteFile(file, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	return file
}

// isoManifest reads manifest.json back from a bundle ISO.
func isoManifest(t *testing.T, iso string) *artifacts.Manifest {
	t.Helper()
	fsys := openISO(t, iso)
	if got := strings.TrimSpace(fsys.Label()); got != artifacts.DefaultLabel {
		t.Errorf("label %q, want %s", got, artifacts.DefaultLabel)
	}
	data, err := fsys.ReadFile(artifacts.ManifestFile)
	if err != nil {
		t.Fatal(err)
	}
	m, err := artifacts.ParseManifest(iso, data)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range m.Artifacts {
		body, err := fsys.ReadFile(e.Path)
		if err != nil || artifactstest.SHA256(body) != e.SHA256 {
			t.Errorf("%s in the ISO: %v, or its sha256 is not the manifest's", e.Path, err)
		}
	}
	return m
}

func TestBundleOnline(t *testing.T) {
	// runc publishes one checksum file for both architectures: merge the two.
	files := map[string][]byte{}
	for _, arch := range []string{"amd64", "arm64"} {
		for p, data := range artifactstest.MirrorFiles(t, artifactstest.Release(t, "v1.37.2", arch)) {
			if strings.HasSuffix(p, "/runc.sha256sum") {
				data = append(files[p], data...)
			}
			files[p] = data
		}
	}
	base, hits := artifactstest.Serve(t, files)
	dir := t.TempDir()
	file := clusterWithMirror(t, dir, base)
	iso := filepath.Join(dir, "out", "bundle.iso")

	code, out, errOut := bundleCLI(t, "-f", file, "-o", iso, "--arch", "arm64,amd64")
	if code != 0 {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
	if !strings.Contains(out, "14 artifacts for Kubernetes v1.37.2 (amd64,arm64)") || !strings.Contains(errOut, "[14/14]") {
		t.Errorf("output:\n%s%s", out, errOut)
	}
	st, err := os.Stat(iso)
	if err != nil || st.Mode().Perm() != 0o644 {
		t.Fatalf("bundle ISO: %v, %v; want mode 0644", st, err)
	}
	m := isoManifest(t, iso)
	if len(m.Artifacts) != 14 {
		t.Errorf("manifest has %d entries, want 14", len(m.Artifacts))
	}
	// The work directory is a bundle directory the agent can open.
	work := filepath.Join(dir, "out", "bundle.d")
	if _, err := artifacts.OpenBundle(work, work); err != nil {
		t.Fatal(err)
	}

	// A second run downloads nothing again; a damaged file is fetched again.
	kubelet := filepath.Join(work, "bin", "linux", "amd64", "kubelet")
	if err := os.WriteFile(kubelet, []byte("damaged"), 0o644); err != nil {
		t.Fatal(err)
	}
	before := hits.Total()
	code, out, errOut = bundleCLI(t, "-f", file, "-o", iso, "--arch", "amd64,arm64")
	if code != 0 {
		t.Fatalf("second run: exit %d\n%s%s", code, out, errOut)
	}
	if n := strings.Count(errOut, "already downloaded"); n != 13 || !strings.Contains(errOut, "kubelet v1.37.2 (linux/amd64): downloaded from "+base) {
		t.Errorf("second run: %d already downloaded, want 13 and kubelet fetched again:\n%s", n, errOut)
	}
	// One checksum request and one (unread) file request per artifact.
	if got := hits.Total() - before; got != 28 {
		t.Errorf("second run made %d requests, want 28", got)
	}
	isoManifest(t, iso)
}

func TestBundleOnlineChecksumMismatch(t *testing.T) {
	fakes := artifactstest.Release(t, "v1.37.2", "amd64")
	files := artifactstest.MirrorFiles(t, fakes)
	for p := range files {
		if strings.HasSuffix(p, "/amd64/kubectl") {
			files[p] = []byte("not the release")
		}
	}
	base, _ := artifactstest.Serve(t, files)
	dir := t.TempDir()
	iso := filepath.Join(dir, "bundle.iso")
	code, out, errOut := bundleCLI(t, "-f", clusterWithMirror(t, dir, base), "-o", iso)
	if code == 0 || !strings.Contains(errOut, "kubectl v1.37.2 (linux/amd64)") || !strings.Contains(errOut, "sha256 mismatch") {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
	if _, err := os.Stat(iso); !os.IsNotExist(err) {
		t.Errorf("a bundle was written after a failed download: %v", err)
	}
}

func TestBundleFromDir(t *testing.T) {
	tests := []struct {
		name   string
		change func(t *testing.T, dir string)
		args   []string
		code   int
		want   string
	}{
		{name: "with manifest", want: "7 artifacts for Kubernetes v1.37.2"},
		{
			name:   "without manifest",
			change: func(t *testing.T, dir string) { mustRemove(t, filepath.Join(dir, artifacts.ManifestFile)) },
			args:   []string{"--kubernetes-version", "v1.37.2"},
			want:   "7 artifacts for Kubernetes v1.37.2",
		},
		{
			name:   "file not in the manifest",
			change: func(t *testing.T, dir string) { mustWrite(t, filepath.Join(dir, "stray.bin"), "x") },
			code:   exitFailure,
			want:   "stray.bin is not in the manifest",
		},
		{
			name:   "file missing",
			change: func(t *testing.T, dir string) { mustRemove(t, filepath.Join(dir, "runc", "runc.amd64")) },
			code:   exitFailure,
			want:   "runc/runc.amd64 (binary runc v1.5.2 (amd64)) is missing",
		},
		{
			name:   "tampered file",
			change: func(t *testing.T, dir string) { mustWrite(t, filepath.Join(dir, "kubeadm", "kubeadm"), "evil") },
			code:   exitFailure,
			want:   "kubeadm/kubeadm (binary kubeadm v1.37.2 (amd64)): sha256 is",
		},
		{
			name: "bad arch",
			args: []string{"--arch", "s390x"},
			code: exitValidation,
			want: `--arch "s390x": use amd64 or arm64`,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "src")
			// artifactstest's own layout (kubeadm/kubeadm, runc/runc.amd64...): any layout works
			// when a manifest names it.
			artifactstest.WriteBundle(t, dir, "v1.37.2", artifactstest.Release(t, "v1.37.2", "amd64"))
			if tc.name == "without manifest" {
				// Re-lay it out at the paths ksboot uses.
				dir = filepath.Join(t.TempDir(), "layout")
				code, out, errOut := bundleCLI(t, "-f", clusterWithMirror(t, t.TempDir(), serveRelease(t)), "-o", filepath.Join(t.TempDir(), "x.iso"), "--work-dir", dir)
				if code != 0 {
					t.Fatalf("preparing the layout: exit %d\n%s%s", code, out, errOut)
				}
			}
			if tc.change != nil {
				tc.change(t, dir)
			}
			iso := filepath.Join(t.TempDir(), "bundle.iso")
			code, out, errOut := bundleCLI(t, append([]string{"--from-dir", dir, "-o", iso}, tc.args...)...)
			if code != tc.code || !strings.Contains(out+errOut, tc.want) {
				t.Fatalf("exit %d (want %d), want %q in:\n%s%s", code, tc.code, tc.want, out, errOut)
			}
			if tc.code == 0 {
				isoManifest(t, iso)
			} else if _, err := os.Stat(iso); !os.IsNotExist(err) {
				t.Errorf("a bundle was written after an error: %v", err)
			}
		})
	}
}

func serveRelease(t *testing.T) string {
	base, _ := artifactstest.Serve(t, artifactstest.MirrorFiles(t, artifactstest.Release(t, "v1.37.2", "amd64")))
	return base
}

func mustWrite(t *testing.T, p, data string) {
	t.Helper()
	if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func mustRemove(t *testing.T, p string) {
	t.Helper()
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
}
