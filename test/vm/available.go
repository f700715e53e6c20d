package vm

import (
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// hostSources is the host's apt sources file. The guest image is built from the same mirror
// the host uses, so the harness never names a registry host itself.
const hostSources = "/etc/apt/sources.list.d/debian.sources"

// requiredEnv turns every skip of Available into a failure.
const requiredEnv = "KSBOOT_VM_REQUIRED"

// tool is a host binary the harness needs and the Debian package that ships it. qemu-img
// (qemu-utils) is optional: without it each guest gets a sparse copy of the image instead of a
// qcow2 overlay.
type tool struct{ bin, pkg string }

var tools = []tool{
	{"qemu-system-x86_64", "qemu-system-x86"},
	{"mmdebstrap", "mmdebstrap"},
	{"mkfs.ext4", "e2fsprogs"},
	{"debugfs", "e2fsprogs"},
	{"ip", "iproute2"},
}

// Available skips the test unless real guests can be booted here: not under -short, running as
// root (mmdebstrap, network namespaces), with every tool installed and the host's apt sources
// present. The skip message names what is missing and how to get it. With KSBOOT_VM_REQUIRED=1
// in the environment it fails instead of skipping.
//
// GuestImage and NewSegment call Available themselves; a test calls it first only to skip
// before doing other expensive work.
func Available(t testing.TB) {
	t.Helper()
	if reason := unavailable(); reason != "" {
		if os.Getenv(requiredEnv) == "1" {
			t.Fatalf("VM test cannot run (%s=1): %s", requiredEnv, reason)
		}
		t.Skipf("skipping VM test: %s", reason)
	}
}

func unavailable() string {
	if testing.Short() {
		return "-short is set (a VM test boots a real guest and takes minutes)"
	}
	if os.Geteuid() != 0 {
		return "not running as root (mmdebstrap and network namespaces need root)"
	}
	var missing, pkgs []string
	for _, tl := range tools {
		if _, err := exec.LookPath(tl.bin); err != nil {
			missing = append(missing, tl.bin)
			if !slices.Contains(pkgs, tl.pkg) {
				pkgs = append(pkgs, tl.pkg)
			}
		}
	}
	if len(missing) > 0 {
		return fmt.Sprintf("%s not found in PATH (apt-get install -y %s)",
			strings.Join(missing, ", "), strings.Join(pkgs, " "))
	}
	if _, err := os.Stat(hostSources); err != nil {
		return fmt.Sprintf("host apt sources %s not found (the guest image is built from the host's mirror): %v", hostSources, err)
	}
	return ""
}
