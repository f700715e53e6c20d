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
	"github.com/ksboot/ksboot/bootstrap/install/artifacts/collect/collecttest"
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

// clusterWithMirror writes a cluster file whose binaries come from mirror and whose images
// come from a private registry on loopback holding every image the cluster needs (Flannel,
// OpenEBS, no KubeSphere); it returns the file and the registry.
func clusterWithMirror(t *testing.T, dir, mirror string) (string, *collecttest.Registry) {
	t.Helper()
	reg := collecttest.NewRegistry(t)
	h := reg.Host
	collecttest.Push(t,
		h+"/kube-apiserver:v1.37.2", h+"/kube-controller-manager:v1.37.2", h+"/kube-scheduler:v1.37.2",
		h+"/kube-proxy:v1.37.2", h+"/coredns/coredns:v1.14.6", h+"/pause:3.10.2", h+"/etcd:3.7.0-0",
		h+"/flannel-io/flannel:v0.27.4", h+"/flannel-io/flannel-cni-plugin:v1.8.0-flannel1",
		h+"/openebs/provisioner-localpv:4.4.0", h+"/openebs/linux-utils:4.3.0")
	file := filepath.Join(dir, "cluster.yaml")
	data := `apiVersion: ksboot.dev/v1alpha1
kind: Cluster
metadata: {name: bundletest}
spec:
  hosts:
    - {name: cp1, address: 10.0.0.10/24}
  roleGroups: {etcd: [cp1], control-plane: [cp1]}
  kubernetes: {version: v1.37.2}
  network: {plugin: flannel}
  registry: {privateRegistry: "` + h + `"}
  artifacts: {mirror: "` + mirror + `"}
`
	if err := os.WriteFile(file, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	return file, reg
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
	file, reg := clusterWithMirror(t, dir, base)
	iso := filepath.Join(dir, "out", "bundle.iso")

	code, out, errOut := bundleCLI(t, "-f", file, "-o", iso, "--arch", "arm64,amd64")
	if code != 0 {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
	// 14 binaries; kubernetes, kubernetes-control-plane, cni and storage image archives for
	// each architecture.
	if !strings.Contains(out, "22 artifacts for Kubernetes v1.37.2 (amd64,arm64)") || !strings.Contains(errOut, "[22/22] images storage (linux/arm64): pulled 2 images from "+reg.Host) {
		t.Errorf("output:\n%s%s", out, errOut)
	}
	st, err := os.Stat(iso)
	if err != nil || st.Mode().Perm() != 0o644 {
		t.Fatalf("bundle ISO: %v, %v; want mode 0644", st, err)
	}
	m := isoManifest(t, iso)
	if len(m.Artifacts) != 22 {
		t.Errorf("manifest has %d entries, want 22", len(m.Artifacts))
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
	before, regBefore := hits.Total(), reg.Total("")
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
	if got := reg.Total("") - regBefore; got != 0 || strings.Count(errOut, "already pulled") != 8 {
		t.Errorf("second run made %d registry requests, want none:\n%s", got, errOut)
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
	file, _ := clusterWithMirror(t, dir, base)
	code, out, errOut := bundleCLI(t, "-f", file, "-o", iso)
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
			// The binaries and the kubernetes, kubernetes-control-plane, cni and storage image
			// archives.
			want: "11 artifacts for Kubernetes v1.37.2",
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
				file, _ := clusterWithMirror(t, t.TempDir(), serveRelease(t))
				code, out, errOut := bundleCLI(t, "-f", file, "-o", filepath.Join(t.TempDir(), "x.iso"), "--work-dir", dir)
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

// TestBundleOS: --os is checked before anything is downloaded.
func TestBundleOS(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "cluster.yaml")
	mustWrite(t, file, `apiVersion: ksboot.dev/v1alpha1
kind: Cluster
metadata: {name: bundletest}
spec:
  hosts:
    - {name: cp1, address: 10.0.0.10/24}
  roleGroups: {etcd: [cp1], control-plane: [cp1]}
  artifacts: {mirror: "http://127.0.0.1:1"}
`)
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{name: "not an OS", args: []string{"-f", file, "--os", "windows"}, code: exitValidation, want: `OS "windows"`},
		{name: "rpm", args: []string{"-f", file, "--os", "rocky9"}, code: exitValidation, want: "RPM packages is not supported yet"},
		{name: "with --from-dir", args: []string{"--from-dir", dir, "--os", "debian-12"}, code: exitValidation, want: "--from-dir and --os exclude each other"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := bundleCLI(t, append(tc.args, "-o", filepath.Join(t.TempDir(), "b.iso"))...)
			if code != tc.code || !strings.Contains(errOut, tc.want) || strings.Contains(errOut, "[1/") {
				t.Errorf("exit %d (want %d), want %q and no download in:\n%s%s", code, tc.code, tc.want, out, errOut)
			}
		})
	}
}
