package k8sbin

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const (
	// Version is the Kubernetes release the binaries are built from.
	Version = "v1.37.2"
	// EtcdVersion is the etcd release built alongside (hack/build-k8s.sh's default).
	EtcdVersion = "v3.6.8"

	// RequiredEnv, set to 1, turns every skip of this package into a test failure.
	RequiredEnv = "KSBOOT_K8SBIN_REQUIRED"
	// DirEnv names a directory of ready binaries to use instead of the build cache.
	DirEnv = "KSBOOT_K8SBIN_DIR"

	script = "hack/build-k8s.sh"
	// deadlineMargin is left between the end of a build and the test's deadline, so a build
	// that cannot finish in time is stopped and reported instead of the test binary panicking.
	deadlineMargin = 30 * time.Second
)

// Kubeadm returns the path of kubeadm Version, building it if needed.
func Kubeadm(t testing.TB) string { t.Helper(); return Binary(t, "kubeadm") }

// KubeAPIServer returns the path of kube-apiserver Version, building it if needed.
func KubeAPIServer(t testing.TB) string { t.Helper(); return Binary(t, "kube-apiserver") }

// Etcd returns the path of etcd EtcdVersion, building it if needed.
func Etcd(t testing.TB) string { t.Helper(); return Binary(t, "etcd") }

// KubeadmAt returns the path of kubeadm of another Kubernetes release (the releases of the
// version matrix that the tests judge), building it if needed.
func KubeadmAt(t testing.TB, version string) string {
	t.Helper()
	return BinaryAt(t, version, "kubeadm")
}

// Kubectl returns the path of kubectl Version, building it if needed.
func Kubectl(t testing.TB) string { t.Helper(); return Binary(t, "kubectl") }

// known are the names hack/build-k8s.sh builds.
var known = []string{
	"kubeadm", "kubelet", "kubectl", "kube-apiserver", "kube-controller-manager",
	"kube-scheduler", "kube-proxy", "etcd",
}

// Dir returns the directory the binaries are cached in (or KSBOOT_K8SBIN_DIR).
func Dir() (string, error) { return DirAt(Version) }

// DirAt returns the directory the binaries of a Kubernetes release are cached in;
// KSBOOT_K8SBIN_DIR replaces it for Version only.
func DirAt(version string) (string, error) {
	if d := os.Getenv(DirEnv); d != "" && version == Version {
		return d, nil
	}
	cache, err := os.UserCacheDir() // $XDG_CACHE_HOME or $HOME/.cache, as the script computes
	if err != nil {
		return "", fmt.Errorf("locating the cache directory: %w", err)
	}
	return filepath.Join(cache, "ksboot", "k8s", version, "bin"), nil
}

// locks serialises builds within one test binary; the script's flock does so across binaries.
var locks sync.Map // name → *sync.Mutex

// Binary returns the path of the named component (one of the names hack/build-k8s.sh knows),
// building it if it is missing. It skips the test, saying why, when the binary is missing and
// cannot be built; see the package documentation.
func Binary(t testing.TB, name string) string {
	t.Helper()
	return BinaryAt(t, Version, name)
}

// BinaryAt is Binary for a Kubernetes release other than Version.
func BinaryAt(t testing.TB, version, name string) string {
	t.Helper()
	if !slices.Contains(known, name) {
		t.Fatalf("k8sbin: unknown component %q; known: %s", name, strings.Join(known, " "))
	}
	dir, err := DirAt(version)
	if err != nil {
		skip(t, "k8sbin: %v", err)
	}
	path := filepath.Join(dir, name)
	if executable(path) {
		return path
	}
	if os.Getenv(DirEnv) != "" && version == Version {
		skip(t, "k8sbin: %s is not in %s=%s (binaries from there are never built)", name, DirEnv, dir)
	}

	mu, _ := locks.LoadOrStore(version+"/"+name, &sync.Mutex{})
	mu.(*sync.Mutex).Lock()
	defer mu.(*sync.Mutex).Unlock()
	if executable(path) { // built by another test of this binary meanwhile
		return path
	}
	if testing.Short() {
		skip(t, "k8sbin: %s %s is not built and -short forbids building it (minutes on a cold cache); "+
			"run hack/build-k8s.sh %s %s once, or test without -short", name, version, version, name)
	}
	for _, tool := range []string{"go", "bash", "flock"} {
		if _, err := exec.LookPath(tool); err != nil {
			skip(t, "k8sbin: cannot build %s: %s is not on PATH", name, tool)
		}
	}
	root, err := repoRoot()
	if err != nil {
		skip(t, "k8sbin: cannot build %s: %v", name, err)
	}

	ctx := context.Background()
	if dl, ok := t.(interface{ Deadline() (time.Time, bool) }); ok {
		if d, ok := dl.Deadline(); ok {
			left := time.Until(d) - deadlineMargin
			if left <= 0 {
				skip(t, "k8sbin: %s is not built and the test deadline leaves no time to build it; run hack/build-k8s.sh %s %s first", name, version, name)
			}
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, left)
			defer cancel()
		}
	}
	start := time.Now()
	t.Logf("k8sbin: building %s %s with %s (minutes on a cold build cache; cached in %s)", name, version, script, dir)
	out, err := runScript(ctx, root, version, name)
	if err != nil {
		if ctx.Err() != nil {
			skip(t, "k8sbin: building %s did not finish before the test deadline (%s spent); run hack/build-k8s.sh %s %s first, or raise -timeout\n%s",
				name, time.Since(start).Round(time.Second), version, name, tail(out, 20))
		}
		skip(t, "k8sbin: building %s failed (%v); is the Go module proxy reachable? output:\n%s", name, err, tail(out, 30))
	}
	if !executable(path) {
		t.Fatalf("k8sbin: %s reported success but %s is missing; output:\n%s", script, path, tail(out, 30))
	}
	t.Logf("k8sbin: built %s in %s", name, time.Since(start).Round(time.Second))
	return path
}

// runScript runs the build script in its own process group and stops the whole group with
// SIGTERM when ctx ends, so go build children do not outlive the test and the script's exit
// trap removes its temporary files.
func runScript(ctx context.Context, root, version, name string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, "bash", filepath.Join(root, script), version, name)
	cmd.Dir = root
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM) }
	cmd.WaitDelay = 20 * time.Second
	err := cmd.Run()
	return out.Bytes(), err
}

// repoRoot finds the ksboot module root above the working directory (a test runs in its
// package directory).
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("locating the repository: %w", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, script)); err == nil {
			if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
				return dir, nil
			}
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no " + script + " in any parent of the working directory")
		}
		dir = parent
	}
}

func executable(path string) bool {
	st, err := os.Stat(path)
	return err == nil && st.Mode().IsRegular() && st.Mode().Perm()&0o111 != 0
}

func skip(t testing.TB, format string, args ...any) {
	t.Helper()
	if os.Getenv(RequiredEnv) == "1" {
		t.Fatalf(format+" ("+RequiredEnv+"=1 makes this a failure)", args...)
	}
	t.Skipf(format, args...)
}

// tail returns the last n lines of out, for messages.
func tail(out []byte, n int) string {
	lines := strings.Split(strings.TrimRight(string(out), "\n"), "\n")
	if len(lines) > n {
		lines = append([]string{"…"}, lines[len(lines)-n:]...)
	}
	return strings.Join(lines, "\n")
}
