package k8sbin

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestBinariesReportVersion builds (or finds) each binary and checks that it reports the
// release it was built from: without the script's -X flags they would say v0.0.0-master and
// kubeadm would reject the configuration's kubernetesVersion.
func TestBinariesReportVersion(t *testing.T) {
	for _, tc := range []struct {
		name string
		path func(testing.TB) string
		args []string
		want string
	}{
		{"kubeadm", Kubeadm, []string{"version", "-o", "short"}, Version},
		{"etcd", Etcd, []string{"--version"}, "etcd Version: " + strings.TrimPrefix(EtcdVersion, "v")},
		{"kube-apiserver", KubeAPIServer, []string{"--version"}, "Kubernetes " + Version},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := tc.path(t)
			out, err := exec.Command(path, tc.args...).CombinedOutput()
			if err != nil {
				t.Fatalf("%s %s: %v\n%s", path, strings.Join(tc.args, " "), err, out)
			}
			if !strings.Contains(string(out), tc.want) {
				t.Errorf("%s %s = %q, want it to contain %q", path, strings.Join(tc.args, " "), out, tc.want)
			}
		})
	}
}

func TestRepoRoot(t *testing.T) {
	root, err := repoRoot()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, script)); err != nil {
		t.Fatalf("repoRoot() = %q without the build script: %v", root, err)
	}
}

func TestTail(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		n        int
		want     string
	}{
		{"short", "a\nb\n", 5, "a\nb"},
		{"cut", "a\nb\nc\nd\n", 2, "…\nc\nd"},
		{"empty", "", 3, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tail([]byte(tc.in), tc.n); got != tc.want {
				t.Errorf("tail(%q, %d) = %q, want %q", tc.in, tc.n, got, tc.want)
			}
		})
	}
}
