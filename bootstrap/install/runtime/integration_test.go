package runtime

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// containerdVersion is the release whose own code judges the rendered files.
const containerdVersion = "v2.4.2"

// cacheDir is where the integration tests keep what they build, outside the repository
// (docs COMPONENTS.md: build real components from their Go modules, cache them).
func cacheDir(t *testing.T) string {
	base := os.Getenv("XDG_CACHE_HOME")
	if base == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			t.Skipf("no cache directory: %v", err)
		}
		base = filepath.Join(home, ".cache")
	}
	return filepath.Join(base, "ksboot", "containerd", containerdVersion, "bin")
}

// goBuild runs the go command for a test build with a bounded time, without a go.work or a
// toolchain download, and with the caller's GOFLAGS (e.g. -mod=vendor) cleared.
func goBuild(t *testing.T, dir string, env []string, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), append([]string{"GOTOOLCHAIN=local", "GOWORK=off", "CGO_ENABLED=0", "GOFLAGS=-mod=mod"}, env...)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// containerdBinary builds containerd (once; it takes a few minutes cold) into the cache.
func containerdBinary(t *testing.T) string {
	bin := filepath.Join(cacheDir(t), "containerd")
	if _, err := os.Stat(bin); err == nil {
		return bin
	}
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("go is not on PATH")
	}
	// Build into a private directory, then rename: the cache never holds half a binary.
	tmp := t.TempDir()
	goBuild(t, tmp, []string{"GOBIN=" + tmp}, "install", "github.com/containerd/containerd/v2/cmd/containerd@"+containerdVersion)
	if err := os.MkdirAll(filepath.Dir(bin), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(tmp, "containerd"), bin); err != nil {
		t.Fatal(err)
	}
	return bin
}

// hostsProbe builds testdata/hostsprobe against containerd's module in a throwaway module.
func hostsProbe(t *testing.T) string {
	src, err := os.ReadFile(filepath.Join("testdata", "hostsprobe", "main.go"))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(src)
	bin := filepath.Join(cacheDir(t), "hostsprobe-"+hex.EncodeToString(sum[:])[:12])
	if _, err := os.Stat(bin); err == nil {
		return bin
	}
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("go is not on PATH")
	}
	dir := t.TempDir()
	mod := "module hostsprobe\n\ngo 1.26\n\nrequire github.com/containerd/containerd/v2 " + containerdVersion + "\n"
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte(mod), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "main.go"), src, 0o644); err != nil {
		t.Fatal(err)
	}
	goBuild(t, dir, nil, "build", "-o", filepath.Join(dir, "hostsprobe"), ".")
	if err := os.MkdirAll(filepath.Dir(bin), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(dir, "hostsprobe"), bin); err != nil {
		t.Fatal(err)
	}
	return bin
}

// writeTree writes rendered files under dir.
func writeTree(t *testing.T, dir string, files []File) {
	for _, f := range files {
		p := filepath.Join(dir, f.Path)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, f.Data, f.Mode); err != nil {
			t.Fatal(err)
		}
	}
}

// TestContainerdLoadsConfig feeds config.toml to containerd v2.4.2's own loader: `containerd
// config dump` decodes every plugin's section strictly and warns about each unknown key.
func TestContainerdLoadsConfig(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: builds containerd " + containerdVersion)
	}
	bin := containerdBinary(t)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			files, err := Files(c.params)
			if err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			writeTree(t, dir, files)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, bin, "--config", filepath.Join(dir, ContainerdConfigPath), "config", "dump")
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			if err := cmd.Run(); err != nil {
				t.Fatalf("containerd config dump: %v\n%s", err, stderr.String())
			}
			for _, bad := range []string{"unknown key", "level=error", "level=fatal"} {
				if strings.Contains(stderr.String(), bad) {
					t.Errorf("containerd complained (%q):\n%s", bad, stderr.String())
				}
			}
			dump := stdout.String()
			want := []string{
				"[plugins.'io.containerd.cri.v1.images'.pinned_images]\n      sandbox = '" + c.params.SandboxImage + "'",
				"[plugins.'io.containerd.cri.v1.images'.registry]\n      config_path = '/etc/containerd/certs.d'",
				"runtime_type = 'io.containerd.runc.v2'",
				"sandboxer = 'podsandbox'", // defaults survive next to ours
				"SystemdCgroup = true",
				"imports = ['/etc/containerd/conf.d/*.toml']",
			}
			if c.name == "registries" {
				want = append(want,
					"[plugins.'io.containerd.cri.v1.images'.registry.configs.'reg.example.com'.auth]\n            username = 'admin'\n            password = \"pa\\\"ss\\\\word'\"",
					"[plugins.'io.containerd.cri.v1.images'.registry.configs.'registry-1.docker.io'.auth]\n            username = 'hubuser'")
			}
			for _, w := range want {
				if !strings.Contains(dump, w) {
					t.Errorf("containerd's view lacks %q", w)
				}
			}
			if t.Failed() {
				t.Logf("containerd config dump:\n%s", dump)
			}
		})
	}
}

// TestContainerdResolvesHosts asks containerd's registry host resolution (the code the CRI
// plugin runs for every pull) what it makes of the rendered certs.d.
func TestContainerdResolvesHosts(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: builds a program against containerd " + containerdVersion)
	}
	probe := hostsProbe(t)
	tests := []struct {
		name       string
		params     Params
		namespaces []string
		want       string
	}{
		{"registries", caseParams(t, "registries"), []string{"docker.io", "10.0.0.9:5000", "harbor.local", "reg.example.com", "registry.k8s.io"}, `
docker.io https://mirror.example.com/v2 pull,resolve default
docker.io https://10.0.0.9:5000/v2 pull,resolve *docker.httpFallback
docker.io https://registry-1.docker.io/v2 pull,resolve,push default
10.0.0.9:5000 https://10.0.0.9:5000/v2 pull,resolve,push *docker.httpFallback
harbor.local https://harbor.local/v2 pull,resolve,push *docker.httpFallback
reg.example.com https://reg.example.com/v2 pull,resolve,push default
registry.k8s.io https://registry.k8s.io/v2 pull,resolve,push default
`},
		{"http-private-registry", caseParams(t, "http-private-registry"), []string{"dockerhub.kubekey.local", "docker.io"}, `
dockerhub.kubekey.local https://dockerhub.kubekey.local/v2 pull,resolve,push *docker.httpFallback
docker.io https://registry-1.docker.io/v2 pull,resolve,push default
`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			files, err := Files(tt.params)
			if err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			writeTree(t, dir, files)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, probe, append([]string{filepath.Join(dir, CertsDir)}, tt.namespaces...)...)
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			if err := cmd.Run(); err != nil {
				t.Fatalf("hostsprobe: %v\n%s", err, stderr.String())
			}
			if got := stdout.String(); got != strings.TrimPrefix(tt.want, "\n") {
				t.Errorf("containerd resolves\n%s\nwant\n%s", got, strings.TrimPrefix(tt.want, "\n"))
			}
		})
	}
}
