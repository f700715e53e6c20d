package vm_test

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ksboot/ksboot/test/vm"
)

// TestGuestBootsNoCloudSeed boots the cached image with a NoCloud seed and checks, from the
// powered-off guest's disk and its serial log, that cloud-init applied user-data, meta-data and a
// static network-config matched by MAC on a NIC in a private segment, and that the halt unit
// powered the guest off.
func TestGuestBootsNoCloudSeed(t *testing.T) {
	vm.Available(t)
	img := vm.GuestImage(t, vm.ImageOptions{})
	if img.BuildTime > 0 {
		t.Logf("image build: %s (key %s)", img.BuildTime.Round(100*time.Millisecond), img.Key)
	} else {
		t.Logf("image build: cached (key %s in %s)", img.Key, img.Dir)
	}

	const (
		mac      = "52:54:00:6b:73:01"
		address  = "10.77.0.10"
		hostname = "ksboot-selftest"
		status   = `{"phase":"done","from":"vm self-test"}`
	)
	seed := makeSeed(t, map[string]string{
		"user-data": `#cloud-config
write_files:
  - path: /var/lib/ksboot/status.json
    permissions: "0600"
    content: '` + status + `'
    # In cloud-final, so that the halt unit fires only once cloud-init has run every stage.
    defer: true
`,
		"meta-data": "instance-id: ksboot-vm-selftest\nlocal-hostname: " + hostname + "\n",
		"network-config": `version: 2
ethernets:
  eth0:
    match:
      macaddress: "` + mac + `"
    set-name: eth0
    addresses: [` + address + `/24]
`,
	})

	g := vm.Start(t, img, vm.Options{
		Name:   "selftest",
		MemMiB: 1024,
		CPUs:   2,
		Seed:   seed,
		NICs:   []vm.NIC{{MAC: mac}},
	})
	if _, err := g.ReadFile("/etc/hostname"); err == nil {
		t.Errorf("ReadFile on a running guest: want an error, got none")
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	if err := g.WaitSerial(ctx, regexp.MustCompile(`Cloud-init v\. \S+ finished at`)); err != nil {
		t.Fatal(err)
	}
	if err := g.WaitPoweroff(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("boot → poweroff: %s, qemu peak RSS: %d MiB", g.Runtime().Round(100*time.Millisecond), g.PeakRSS()>>20)

	got, err := g.ReadFile("/var/lib/ksboot/status.json")
	if err != nil {
		t.Fatalf("status file: %v", err)
	}
	if string(got) != status {
		t.Errorf("status file: got %q, want %q", got, status)
	}
	if got, err := g.ReadFile("/etc/hostname"); err != nil || string(got) != hostname+"\n" {
		t.Errorf("/etc/hostname: got %q (%v), want %q", got, err, hostname+"\n")
	}
	// /etc/os-release is a relative symbolic link into /usr/lib.
	if got, err := g.ReadFile("/etc/os-release"); err != nil || !strings.Contains(string(got), "VERSION_CODENAME=bookworm") {
		t.Errorf("/etc/os-release: got %q (%v), want bookworm's", got, err)
	}
	if _, err := g.ReadFile("/var/lib/ksboot/no-such-file"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("ReadFile of a missing file: got %v, want fs.ErrNotExist", err)
	}
	dest := t.TempDir()
	if err := g.CopyDir("/var/lib/ksboot", dest); err != nil {
		t.Errorf("CopyDir: %v", err)
	} else if got, err := os.ReadFile(filepath.Join(dest, "ksboot", "status.json")); err != nil || string(got) != status {
		t.Errorf("CopyDir: status.json: got %q (%v), want %q", got, err, status)
	}
	if err := g.CopyDir("/var/lib/no-such-dir", dest); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("CopyDir of a missing directory: got %v, want fs.ErrNotExist", err)
	}

	log := g.SerialLog()
	for _, want := range []*regexp.Regexp{
		// cloud-init's network table: eth0 up with the static address from network-config.
		regexp.MustCompile(`ci-info: \|\s*eth0\s*\|\s*True\s*\|\s*` + regexp.QuoteMeta(address) + `\s*\|`),
		regexp.MustCompile(`ksboot-test-halt: /var/lib/ksboot/status.json exists`),
		regexp.MustCompile(`reboot: Power down`),
	} {
		if !want.MatchString(log) {
			t.Errorf("serial log does not match %q", want)
		}
	}
	// A clean boot of the bare image, so that tests of ksboot's seeds can treat any failed
	// unit or cloud-init warning as theirs.
	for _, bad := range []*regexp.Regexp{
		regexp.MustCompile(`.*Failed with result.*`),
		regexp.MustCompile(`.*Failed to (start|mount) .*`),
		regexp.MustCompile(`.*Invalid cloud-config provided.*`),
		regexp.MustCompile(`.*util.py\[WARNING\].*`),
	} {
		if m := bad.FindString(log); m != "" {
			t.Errorf("serial log shows a problem of the image itself: %s", m)
		}
	}
}

// TestSegmentConnectsGuests starts two guests on one private segment and checks that one
// fetches a file over HTTP from the other.
func TestSegmentConnectsGuests(t *testing.T) {
	vm.Available(t)
	img := vm.GuestImage(t, vm.ImageOptions{})
	seg := vm.NewSegment(t)

	netcfg := func(mac, addr string) string {
		return "version: 2\nethernets:\n  eth0:\n    match:\n      macaddress: \"" + mac +
			"\"\n    set-name: eth0\n    addresses: [" + addr + "/24]\n"
	}
	server := makeSeed(t, map[string]string{
		"user-data": `#cloud-config
write_files:
  - path: /srv/peer/hello.txt
    content: "hello from the server guest"
runcmd:
  - [systemd-run, --unit=peer-http, python3, -m, http.server, "8080", --bind, 10.77.1.10, --directory, /srv/peer]
`,
		"meta-data":      "instance-id: server\nlocal-hostname: server\n",
		"network-config": netcfg("52:54:00:6b:73:10", "10.77.1.10"),
	})
	client := makeSeed(t, map[string]string{
		"user-data": `#cloud-config
runcmd:
  - - python3
    - -c
    - |
      import os, time, urllib.request
      data = b"FAILED: no answer from 10.77.1.10:8080 within 300 s"
      for _ in range(300):
          try:
              data = urllib.request.urlopen("http://10.77.1.10:8080/hello.txt", timeout=2).read()
              break
          except Exception:
              time.sleep(1)
      os.makedirs("/var/lib/ksboot", exist_ok=True)
      open("/var/lib/ksboot/status.json", "wb").write(data)
`,
		"meta-data":      "instance-id: client\nlocal-hostname: client\n",
		"network-config": netcfg("52:54:00:6b:73:11", "10.77.1.11"),
	})

	vm.Start(t, img, vm.Options{Name: "server", MemMiB: 768, Seed: server, Segment: seg,
		NICs: []vm.NIC{{MAC: "52:54:00:6b:73:10"}}})
	c := vm.Start(t, img, vm.Options{Name: "client", MemMiB: 768, Seed: client, Segment: seg,
		NICs: []vm.NIC{{MAC: "52:54:00:6b:73:11"}}})

	ctx, cancel := context.WithTimeout(context.Background(), 12*time.Minute)
	defer cancel()
	if err := c.WaitPoweroff(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("client boot → poweroff with two guests running: %s, client peak RSS: %d MiB",
		c.Runtime().Round(100*time.Millisecond), c.PeakRSS()>>20)
	got, err := c.ReadFile("/var/lib/ksboot/status.json")
	if err != nil {
		t.Fatal(err)
	}
	if want := "hello from the server guest"; string(got) != want {
		t.Errorf("client fetched %q, want %q", got, want)
	}
}

// makeSeed writes a NoCloud seed ISO (volume label cidata) holding files, with cloud-localds
// when installed, otherwise with xorriso.
func makeSeed(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	seed := filepath.Join(dir, "seed.iso")
	var cmd *exec.Cmd
	if _, err := exec.LookPath("cloud-localds"); err == nil {
		args := []string{seed, filepath.Join(dir, "user-data"), filepath.Join(dir, "meta-data")}
		if _, ok := files["network-config"]; ok {
			args = append([]string{"--network-config=" + filepath.Join(dir, "network-config")}, args...)
		}
		cmd = exec.Command("cloud-localds", args...)
	} else if _, err := exec.LookPath("xorriso"); err == nil {
		args := []string{"-as", "mkisofs", "-quiet", "-output", seed, "-volid", "cidata", "-joliet", "-rock"}
		for name := range files {
			args = append(args, filepath.Join(dir, name))
		}
		cmd = exec.Command("xorriso", args...)
	} else {
		t.Skip("skipping: neither cloud-localds (cloud-image-utils) nor xorriso is installed to make a NoCloud seed")
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("making seed: %s: %v\n%s", cmd, err, out)
	}
	return seed
}

// TestGuestImage builds (or finds) the default image and says where it is; hack/guest-image.sh
// runs it alone to warm the cache before the VM tests.
func TestGuestImage(t *testing.T) {
	img := vm.GuestImage(t, vm.ImageOptions{})
	build := "found in the cache"
	if img.BuildTime > 0 {
		build = "built in " + img.BuildTime.Round(time.Second).String()
	}
	t.Logf("guest image %s %s: %s", img.Key, build, img.Dir)
}
