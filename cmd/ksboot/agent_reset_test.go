package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// resetNode is a temporary root holding some of what a bootstrapped node holds.
func resetNode(t *testing.T) (root string, files []string) {
	t.Helper()
	root = t.TempDir()
	files = []string{
		"etc/kubernetes/admin.conf",
		"etc/kubernetes/pki/ca.crt",
		"var/lib/kubelet/config.yaml",
		"var/lib/ksboot/status.json",
		"var/lib/ksboot/bootstrap.complete",
		"etc/ksboot/node.yaml",
		"etc/cni/net.d/10-flannel.conflist",
		"etc/systemd/system/ksboot-bootstrap.service",
		"etc/systemd/system/kubelet.service",
		"usr/local/bin/kubeadm",
		"usr/bin/cloud-init",
		"var/lib/cloud/instances/iid-1/user-data.txt",
		"sys/class/net/cni0/operstate",
	}
	for _, f := range files {
		p := filepath.Join(root, f)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("x\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return root, files
}

// TestAgentResetRefusesWithoutYes: the reset is destructive, so it needs --yes (or --dry-run)
// and touches nothing without it.
func TestAgentResetRefusesWithoutYes(t *testing.T) {
	root, files := resetNode(t)
	code, out, errOut := ksboot(t, "agent", "reset", "--root", root)
	if code == 0 {
		t.Fatalf("agent reset without --yes succeeded:\n%s", out)
	}
	if !strings.Contains(errOut, "destructive") || !strings.Contains(errOut, "pass --yes") || out != "" {
		t.Errorf("exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	// With --yes, a --root other than / is refused too: the files are there, but the commands
	// would reset the machine the command runs on.
	code, out, errOut = ksboot(t, "agent", "reset", "--yes", "--root", root)
	if code == 0 || !strings.Contains(errOut, "is only for --dry-run") || out != "" {
		t.Errorf("agent reset --yes --root: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	for _, f := range files {
		if _, err := os.Stat(filepath.Join(root, f)); err != nil {
			t.Errorf("refused reset touched %s: %v", f, err)
		}
	}
}

// TestAgentResetDryRun: --dry-run against a temporary root prints the steps and removes nothing.
func TestAgentResetDryRun(t *testing.T) {
	root, files := resetNode(t)
	code, out, errOut := ksboot(t, "agent", "reset", "--dry-run", "--root", root)
	if code != 0 {
		t.Fatalf("agent reset --dry-run: exit %d\n%s%s", code, out, errOut)
	}
	for _, want := range []string{
		"would run: systemctl stop ksboot-bootstrap.service\n",
		"would run: kubeadm reset -f --cri-socket unix:///run/containerd/containerd.sock\n",
		"would run: systemctl stop kubelet.service\n",
		"would run: ip link delete cni0\n",
		"ksboot: reset: network: would remove /etc/cni/net.d/10-flannel.conflist\n",
		"ksboot: reset: kubernetes state: would remove /etc/kubernetes\n",
		"ksboot: reset: ksboot state: would remove /var/lib/ksboot/bootstrap.complete\n",
		"ksboot: reset: ksboot state: would remove /etc/ksboot\n",
		"would run: cloud-init clean\n",
		"ksboot: reset: dry run: nothing was changed\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("dry run lacks %q:\n%s", want, out)
		}
	}
	for _, f := range files {
		if _, err := os.Stat(filepath.Join(root, f)); err != nil {
			t.Errorf("the dry run removed %s: %v", f, err)
		}
	}
}
