package install

import (
	"bufio"
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ksboot/ksboot/bootstrap/host"
	"github.com/ksboot/ksboot/bootstrap/install/artifacts"
	"github.com/ksboot/ksboot/bootstrap/install/artifacts/artifactstest"
	"github.com/ksboot/ksboot/cluster"
	"github.com/ksboot/ksboot/versions"
)

// The integration tests use real components built from their Go modules (docs
// COMPONENTS.md), cached outside the repository.

func cacheRoot(t *testing.T) string {
	base := os.Getenv("XDG_CACHE_HOME")
	if base == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			t.Skipf("no cache directory: %v", err)
		}
		base = filepath.Join(home, ".cache")
	}
	return filepath.Join(base, "ksboot")
}

// goInstall builds pkg@version into the cache (once) and returns the binary's path.
func goInstall(t *testing.T, cacheDir, binary, pkgAtVersion string, cgo bool, ldflags string) string {
	t.Helper()
	bin := filepath.Join(cacheRoot(t), cacheDir, binary)
	if _, err := os.Stat(bin); err == nil {
		return bin
	}
	tmp := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	args := []string{"install"}
	if ldflags != "" {
		args = append(args, "-ldflags", ldflags)
	}
	cmd := exec.CommandContext(ctx, "go", append(args, pkgAtVersion)...)
	cmd.Dir = tmp
	cgoEnv := "CGO_ENABLED=0"
	if cgo {
		cgoEnv = "CGO_ENABLED=1" // runc's nsenter is C
	}
	cmd.Env = append(os.Environ(), "GOTOOLCHAIN=local", "GOWORK=off", "GOFLAGS=", cgoEnv, "GOBIN="+tmp)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go install %s: %v\n%s", pkgAtVersion, err, out)
	}
	if err := os.MkdirAll(filepath.Dir(bin), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(tmp, binary), bin); err != nil {
		t.Fatal(err)
	}
	return bin
}

// kubeBinaries builds kubeadm, kubelet and kubectl with hack/build-k8s.sh (cached).
func kubeBinaries(t *testing.T) map[string]string {
	t.Helper()
	script, err := filepath.Abs("../../hack/build-k8s.sh")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, script, k8sVersion, artifacts.Kubeadm, artifacts.Kubelet, artifacts.Kubectl)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s: %v\n%s", script, err, stderr.String())
	}
	bins := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if name, p, ok := strings.Cut(sc.Text(), " "); ok {
			bins[name] = p
		}
	}
	return bins
}

// realRunner runs the node's commands for real, from the binaries under the test's root.
type realRunner struct{ root host.Root }

func (r realRunner) Run(ctx context.Context, c host.Cmd) ([]byte, error) {
	c.Name = r.root.Path(c.Name)
	return host.Real{}.Run(ctx, c)
}

// TestInstallRealBinaries installs real kubeadm, kubelet, kubectl, containerd, runc and crictl
// of the pinned versions from an HTTP mirror laid out like upstream (real files, real sha256
// files), then lets Verify ask each of them for its version.
func TestInstallRealBinaries(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: builds Kubernetes, containerd, runc and crictl from their modules")
	}
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("go is not on PATH")
	}
	kube := kubeBinaries(t)
	m := versions.MustLookup(k8sVersion)
	if !strings.HasPrefix(m.Containerd, "v2.") {
		t.Fatalf("this test builds containerd 2.x; the matrix names %s for %s", m.Containerd, k8sVersion)
	}
	ctrd := "containerd/" + m.Containerd + "/bin"
	bins := map[string]string{
		"containerd":              goInstall(t, ctrd, "containerd", "github.com/containerd/containerd/v2/cmd/containerd@"+m.Containerd, false, ""),
		"containerd-shim-runc-v2": goInstall(t, ctrd, "containerd-shim-runc-v2", "github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2@"+m.Containerd, false, ""),
		"ctr":                     goInstall(t, ctrd, "ctr", "github.com/containerd/containerd/v2/cmd/ctr@"+m.Containerd, false, ""),
		"runc":                    goInstall(t, "runc/"+m.Runc+"/bin", "runc", "github.com/opencontainers/runc@"+m.Runc, true, ""),
		// crictl reports "unknown" unless its release version is linked in, as its Makefile does.
		"crictl": goInstall(t, "cri-tools/"+m.Crictl+"/bin", "crictl", "sigs.k8s.io/cri-tools/cmd/crictl@"+m.Crictl, false,
			"-X sigs.k8s.io/cri-tools/pkg/version.Version="+m.Crictl),
	}
	read := func(p string) []byte {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	// The mirror, on disk: every artifact at its upstream path with its checksum file.
	var fakes []artifactstest.Fake
	for _, a := range artifacts.Components(k8sVersion, "amd64") {
		f := artifactstest.Fake{Artifact: a}
		switch a.Name {
		case artifacts.Kubeadm, artifacts.Kubelet, artifacts.Kubectl:
			f.Data = read(kube[a.Name])
		case artifacts.Runc:
			f.Data = read(bins["runc"])
		case artifacts.Containerd:
			f.Data = artifactstest.TarGz(t,
				artifactstest.TarEntry{Name: "bin/containerd", Mode: 0o755, Data: string(read(bins["containerd"]))},
				artifactstest.TarEntry{Name: "bin/containerd-shim-runc-v2", Mode: 0o755, Data: string(read(bins["containerd-shim-runc-v2"]))},
				artifactstest.TarEntry{Name: "bin/ctr", Mode: 0o755, Data: string(read(bins["ctr"]))})
		case artifacts.Crictl:
			f.Data = artifactstest.TarGz(t, artifactstest.TarEntry{Name: "crictl", Mode: 0o755, Data: string(read(bins["crictl"]))})
		case artifacts.CNIPlugins:
			f.Data = artifactstest.Release(t, k8sVersion, "amd64")[6].Data // not run by Verify
		}
		fakes = append(fakes, f)
	}
	site := t.TempDir()
	for p, data := range artifactstest.MirrorFiles(t, fakes) {
		full := filepath.Join(site, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	srv := httptest.NewServer(http.FileServer(http.Dir(site)))
	defer srv.Close()

	f := newFixture(t, func(c *cluster.Cluster) { c.Spec.Artifacts.Mirror = srv.URL })
	f.opts.Exec = realRunner{root: f.root}
	ctx := context.Background()
	if err := Binaries(ctx, f.opts); err != nil {
		t.Fatal(err)
	}
	if err := Verify(ctx, f.opts); err != nil {
		t.Fatal(err)
	}
	t.Log(strings.TrimSpace(f.console.String()))

	// And a kubelet of another release is caught, naming both versions.
	other := path.Join(BinDir, "kubelet")
	if err := os.WriteFile(f.root.Path(other), []byte("#!/bin/sh\necho Kubernetes v1.36.3\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	err := Verify(ctx, f.opts)
	if err == nil || !strings.Contains(err.Error(), "kubelet: found v1.36.3, want v1.37.2") {
		t.Fatalf("got %v", err)
	}
}

// TestDpkgQueryForReal asks this machine's dpkg which packages are installed, to check the
// parsing against the real tool (skipped where there is no dpkg).
func TestDpkgQueryForReal(t *testing.T) {
	if _, err := exec.LookPath("dpkg-query"); err != nil {
		t.Skip("no dpkg-query here")
	}
	f := newFixture(t, nil)
	f.opts.Exec = host.Real{}
	missing, err := missingPackages(context.Background(), f.opts, "debian", []string{"dpkg", "surely-not-a-package-ksboot", "tar"})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(missing, ",") != "surely-not-a-package-ksboot" {
		t.Errorf("missing = %v, want only the made-up package", missing)
	}
}
