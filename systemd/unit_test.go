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
		"[Unit]\n", "After=network-online.target\n",
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
	for name, u := range map[string]Unit{UnitName: BootstrapUnit("demo"), AnnounceName: AnnounceUnit("demo"), AgentName: AgentUnit("demo")} {
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

// TestUnitsResumeAtBoot enables the units as the seed does (WantedBy=multi-user.target) next to
// the host's real cloud-init units and asks systemd-analyze for the boot transaction. An ordering
// cycle there means systemd drops a start job at boot, and a node reset mid-bootstrap never
// resumes: cloud-final.service is ordered after multi-user.target, so a unit wanted by
// multi-user.target must not be ordered after cloud-final.
func TestUnitsResumeAtBoot(t *testing.T) {
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze is not installed (package systemd)")
	}
	const cloudFinal = "/lib/systemd/system/cloud-final.service"
	if _, err := os.Stat(cloudFinal); err != nil {
		t.Skipf("cloud-init's units are not installed (%s: %v; package cloud-init)", cloudFinal, err)
	}
	dir := t.TempDir()
	wants := filepath.Join(dir, "multi-user.target.wants")
	if err := os.Mkdir(wants, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, u := range map[string]Unit{UnitName: BootstrapUnit("demo"), AnnounceName: AnnounceUnit("demo"), AgentName: AgentUnit("demo")} {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(u.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(p, filepath.Join(wants, name)); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(sa, "verify", "--man=no", "multi-user.target", "cloud-final.service")
	// A trailing colon keeps systemd's own unit directories after ours.
	cmd.Env = append(os.Environ(), "SYSTEMD_UNIT_PATH="+dir+":")
	out, _ := cmd.CombinedOutput()
	if strings.Contains(string(out), "cycl") {
		t.Errorf("the boot transaction with the ksboot units enabled has an ordering cycle:\n%s", out)
	}
}
