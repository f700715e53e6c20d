// Package vm boots real Debian guests under qemu for ksboot's end-to-end tests.
//
// It owns three things, each cleaned up by the test that created it:
//
//   - the guest image: a Debian bookworm root filesystem built once with mmdebstrap from the
//     host's own apt sources and cached under ${XDG_CACHE_HOME:-$HOME/.cache}/ksboot/guest/<key>/,
//     where the key covers the whole recipe (GuestImage);
//   - private network segments: a network namespace per segment in which qemu's socket-multicast
//     NICs form one Ethernet segment that cannot leave the namespace (NewSegment), or in which a
//     bridge with one tap device per NIC carries the segment and the host side takes part with
//     an address of its own and, if asked, dnsmasq as DHCP server and resolver (NewBridgedSegment;
//     processes started with Segment.Command, or threads moved in with EnterNamespace, see the
//     guests);
//   - guests: one qemu process per guest with its own copy-on-write disk over the cached image,
//     a cloud-init seed, a serial log, and bounded waits (Start, WaitSerial, WaitPoweroff);
//     a power cut and restart on the same disk (HardReset); after power-off (or Stop) the
//     guest's disk is read with debugfs, never mounted (ReadFile).
//
// The image is made for tests, not for users: cloud-init looks only for NoCloud seeds,
// journald forwards service output to the serial console, and a systemd path unit powers the
// guest off a few seconds after the file ImageOptions.HaltOn appears, so a test learns that the
// guest reached its goal from qemu exiting and then inspects the disk.
//
// Guests always run under TCG (-accel tcg): /dev/kvm exists on the CI machines but is not usable
// (see VM.md in the shared notes), and a test must not decide otherwise from the device's
// existence. qemu's default user-mode NIC is never created (-nodefaults), so a guest has no
// route to the host's network.
//
// Tests call Available first; it skips under -short, when not root, or when a tool is missing,
// naming the missing Debian package. Setting KSBOOT_VM_REQUIRED=1 turns those skips into
// failures, so CI cannot pass by silently skipping. Setting KSBOOT_VM_ARTIFACTS=DIR keeps each
// guest's serial and qemu logs under DIR/<test>/<guest>/ after the test.
//
// Only tests import this package; it uses os/exec directly because it drives host tools
// (qemu, mmdebstrap, debugfs, ip) that product code never runs.
package vm
