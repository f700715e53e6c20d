package upgrade

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/ksboot/ksboot/test/k8sbin"
	"github.com/ksboot/ksboot/versions"
)

// TestKubeadmTakesTheUpgradeFlags: every judged release's real kubeadm accepts the command
// lines the agent runs (kubeadm parses every flag before it prints help, and refuses an unknown
// one, which the bogus flag shows).
func TestKubeadmTakesTheUpgradeFlags(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the real kubeadm of every judged release (built once by hack/build-k8s.sh); skipped under -short")
	}
	o := NodeOptions{IgnorePreflight: []string{"NumCPU", "Mem"}, PatchesDir: "/etc/ksboot/kubeadm-patches"}
	for _, j := range versions.Judged {
		if !j.Kubeadm {
			continue
		}
		t.Run(j.Version, func(t *testing.T) {
			kubeadm := k8sbin.KubeadmAt(t, j.Version)
			for _, first := range []bool{true, false} {
				args := kubeadmArgs(first, j.Version, o)
				if out, err := exec.CommandContext(t.Context(), kubeadm, append(args, "--help")...).CombinedOutput(); err != nil {
					t.Errorf("kubeadm %s %s: %v\n%s", j.Version, strings.Join(args, " "), err, out)
				}
				if _, err := exec.CommandContext(t.Context(), kubeadm, append(args, "--no-such-flag", "--help")...).CombinedOutput(); err == nil {
					t.Errorf("kubeadm %s accepted an unknown flag: the check above proves nothing", j.Version)
				}
			}
		})
	}
}
