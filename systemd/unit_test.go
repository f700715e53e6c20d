package systemd

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestBootstrapUnit(t *testing.T) {
	u := BootstrapUnit("demo").String()
	for _, want := range []string{
		"[Unit]\n", "After=network-online.target cloud-final.service\n",
		"ConditionPathExists=!/var/lib/ksboot/bootstrap.complete\n",
		"ExecStart=/usr/local/bin/ksboot agent run --config /etc/ksboot/node.yaml\n",
		"Restart=on-failure\n", "StandardOutput=journal+console\n", "WantedBy=multi-user.target\n",
	} {
		if !strings.Contains(u, want) {
			t.Errorf("unit lacks %q:\n%s", want, u)
		}
	}
	a := AnnounceUnit("demo").String()
	if !strings.Contains(a, "Restart=always\n") || strings.Contains(a, "bootstrap.complete") {
		t.Errorf("announce unit:\n%s", a)
	}
}

// TestUnitsVerify runs systemd's own parser over the units when systemd-analyze is installed.
func TestUnitsVerify(t *testing.T) {
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze is not installed (package systemd); the guest test runs the units for real")
	}
	dir := t.TempDir()
	for name, u := range map[string]Unit{UnitName: BootstrapUnit("demo"), AnnounceName: AnnounceUnit("demo")} {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(u.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		out, _ := exec.Command(sa, "verify", "--man=no", p).CombinedOutput()
		for _, line := range strings.Split(string(out), "\n") {
			// The agent binary is not installed on the test host; everything else is a real finding.
			if strings.Contains(line, name) && !strings.Contains(line, "/usr/local/bin/ksboot") && !strings.Contains(line, "is not executable") {
				t.Errorf("systemd-analyze verify %s: %s", name, line)
			}
		}
	}
}
