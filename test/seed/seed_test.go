package seed

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ksboot/ksboot/bootstrap/state"
	"github.com/ksboot/ksboot/test/ksbootbin"
	"github.com/ksboot/ksboot/test/vm"
)

const clusterFile = `apiVersion: ksboot.dev/v1alpha1
kind: Cluster
metadata: {name: seedtest}
spec:
  hosts:
    - {name: seedvm, address: 10.77.0.10/24, gateway: 10.77.0.1, dns: [10.77.0.1], mac: "52:54:00:77:00:10"}
    - {name: other, address: 10.77.0.11/24, mac: "52:54:00:77:00:11"}
  roleGroups:
    etcd: [seedvm]
    control-plane: [seedvm]
    worker: [other]
  kubernetes: {version: v1.37.2}
  network: {plugin: flannel}
`

// TestGuestBootsSeed boots one guest per seed format and checks what it did with the seed.
func TestGuestBootsSeed(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: skipping the qemu guest test (it boots a Debian guest for each seed format)")
	}
	vm.Available(t)
	bin, sum := ksbootbin.Build(t, "v0.0.0-seedtest")
	dir := t.TempDir()
	file := filepath.Join(dir, "cluster.yaml")
	if err := os.WriteFile(file, []byte(clusterFile), 0o644); err != nil {
		t.Fatal(err)
	}
	img := vm.GuestImage(t, vm.ImageOptions{HaltOn: "/" + state.StatusFile})
	t.Logf("guest image %s (built in %s; 0 = cached)", img.Key, img.BuildTime.Round(time.Second))
	for _, format := range []struct{ name, ext, as string }{{"iso", ".iso", "cdrom"}, {"vfat", ".img", "virtio"}} {
		t.Run(format.name, func(t *testing.T) {
			out := filepath.Join(dir, format.name)
			cmd := exec.Command(bin, "build-seed", "-f", file, "-o", out, "--node", "seedvm", "--format", format.name, "--agent", bin)
			if b, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("build-seed: %v\n%s", err, b)
			}
			g := vm.Start(t, img, vm.Options{Name: "seed-" + format.name, MemMiB: 1024, CPUs: 1,
				Seed: filepath.Join(out, "seedvm"+format.ext), SeedAs: format.as, NICs: []vm.NIC{{MAC: "52:54:00:77:00:10"}}})
			ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
			defer cancel()
			start := time.Now()
			if err := g.WaitPoweroff(ctx); err != nil {
				t.Fatalf("guest did not finish: %v", err)
			}
			t.Logf("%s seed: power-on → poweroff %s, qemu peak RSS %d MiB", format.name, time.Since(start).Round(time.Second), g.PeakRSS()>>20)
			checkGuest(t, g, sum)
		})
	}
}

func checkGuest(t *testing.T, g *vm.Guest, sum string) {
	serial := g.SerialLog()
	read := func(p string) string {
		b, err := g.ReadFile(p)
		if err != nil {
			t.Fatalf("reading %s from the guest disk: %v\n--- serial tail\n%s", p, err, tail(serial, 40))
		}
		return string(b)
	}
	if ds := read("/var/lib/cloud/instance/datasource"); !strings.Contains(ds, "NoCloud") {
		t.Errorf("cloud-init used %q, not the NoCloud seed", ds)
	}
	if h := strings.TrimSpace(read("/etc/hostname")); h != "seedvm" {
		t.Errorf("hostname %q, want seedvm", h)
	}
	agent := read("/usr/local/bin/ksboot")
	got := sha256.Sum256([]byte(agent))
	if hex.EncodeToString(got[:]) != sum {
		t.Errorf("/usr/local/bin/ksboot has sha256 %x, want %s", got, sum)
	}
	if !strings.Contains(read("/etc/ksboot/node.yaml"), "name: seedvm") {
		t.Error("node.yaml is not the seed's")
	}
	var st state.Status
	if err := json.Unmarshal([]byte(read("/var/lib/ksboot/status.json")), &st); err != nil {
		t.Fatal(err)
	}
	if st.Node != "seedvm" || st.Cluster != "seedtest" || st.Version != "v0.0.0-seedtest" {
		t.Errorf("status.json: %+v", st)
	}
	// The static address from network-config was on the NIC when the agent ran.
	if !strings.Contains(strings.Join(st.Addresses, " "), "10.77.0.10/24") {
		t.Errorf("agent saw addresses %v, want 10.77.0.10/24 from network-config", st.Addresses)
	}
	for _, re := range []string{
		`ksboot: agent installed at /usr/local/bin/ksboot \(sha256:` + sum + `\)`,
		`ksboot v0\.0\.0-seedtest: node seedvm, role etcd\+control-plane, cluster seedtest, addresses 10\.77\.0\.10/24`,
	} {
		if !regexp.MustCompile(re).MatchString(serial) {
			t.Errorf("serial log lacks %s\n--- serial tail\n%s", re, tail(serial, 60))
		}
	}
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
