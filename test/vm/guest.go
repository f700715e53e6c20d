package vm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// DefaultWait bounds WaitPoweroff and WaitSerial when their context has no deadline.
const DefaultWait = 15 * time.Minute

// tailLines is how much of the serial log an error quotes.
const tailLines = 40

// Options describe one boot of a guest.
type Options struct {
	// Name names the guest in logs, errors and artifact directories; empty means "guest".
	Name string
	// MemMiB is the guest's memory; 0 means 1024. qemu's resident size follows what the
	// guest touches, not MemMiB: a cloud-init boot peaks at about 520 MiB with 1024 or 768.
	MemMiB int
	// CPUs is the number of virtual CPUs; 0 means 1. On an idle 2-core host two vCPUs
	// shorten a TCG boot from about 33 s to about 22 s (VM.md); on a busy one they do not.
	CPUs int
	// DiskMiB, when larger than the image, makes the guest's disk that large; cloud-init's
	// resizefs module grows the root filesystem at boot.
	DiskMiB int
	// Seed is a cloud-init NoCloud seed (an ISO 9660 or vfat image labelled cidata), or empty.
	// The file is never modified.
	Seed string
	// SeedAs is how the seed is attached: "cdrom" (IDE CD-ROM) or "virtio" (a read-only
	// virtio disk). Empty means "cdrom" for a file named *.iso, otherwise "virtio".
	SeedAs string
	// NICs are the guest's network cards, eth0, eth1, … in order, all on Segment.
	NICs []NIC
	// Segment is the private segment the NICs are attached to. Nil with NICs means a new
	// segment for this guest alone.
	Segment *Segment
	// ExtraDrives are further images attached read-only as virtio disks after the root disk
	// (and after a virtio seed), in order: /dev/vdb, /dev/vdc, … — e.g. an offline bundle ISO
	// the agent finds by its volume label. The files are never modified.
	ExtraDrives []string
	// KernelArgs are appended to the kernel command line "root=/dev/vda rw console=ttyS0
	// net.ifnames=0 panic=-1 modprobe.blacklist=kvm,kvm_amd,kvm_intel tsc=reliable".
	KernelArgs []string
	// TBMiB is the size of qemu's translated-code cache; 0 means 128, which halves qemu's
	// memory for a plain boot (VM.md). A guest running many large programs at once (a
	// Kubernetes control plane: a dozen Go binaries of 50–150 MB) retranslates everything each
	// time the cache fills; qemu's own default is 1024.
	TBMiB int
}

// NIC is a virtio network card on the guest's segment.
type NIC struct {
	// MAC is the card's address (required), e.g. "52:54:00:12:34:56"; the seed's
	// network-config matches it.
	MAC string
}

// Guest is one running (or finished) qemu process.
type Guest struct {
	name    string
	dir     string
	serial  string
	qemuLog string
	disk    string
	diskFmt string
	started time.Time

	argv []string // qemu's command line, for HardReset

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when qemu has exited and exitErr/ended are set

	exitErr error
	ended   time.Time
	hwmKiB  int64
	rawDisk string // the disk converted to raw for debugfs, made once after power-off
}

// Start boots img with opts and returns at once; the guest runs until it powers off or the
// test ends, when t.Cleanup kills qemu's whole process group. Each boot gets its own
// copy-on-write disk in a temporary directory, so the cached image is never modified.
func Start(t testing.TB, img *Image, opts Options) *Guest {
	t.Helper()
	g, err := start(t, img, opts)
	if err != nil {
		t.Fatalf("starting guest: %v", err)
	}
	return g
}

func start(t testing.TB, img *Image, opts Options) (*Guest, error) {
	name := opts.Name
	if name == "" {
		name = "guest"
	}
	if !regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`).MatchString(name) {
		return nil, fmt.Errorf("Options.Name %q: use letters, digits, '.', '_' and '-'", name)
	}
	mem, cpus := opts.MemMiB, opts.CPUs
	if mem == 0 {
		mem = 1024
	}
	if cpus == 0 {
		cpus = 1
	}
	tb := opts.TBMiB
	if tb == 0 {
		tb = 128
	}
	if tb < 32 || tb > 2048 {
		return nil, fmt.Errorf("guest %s: TBMiB %d out of range (32–2048)", name, tb)
	}
	if mem < 256 || cpus < 1 || cpus > 16 {
		return nil, fmt.Errorf("guest %s: MemMiB %d / CPUs %d out of range (MemMiB ≥ 256, 1 ≤ CPUs ≤ 16)", name, mem, cpus)
	}
	seedAs := opts.SeedAs
	if opts.Seed != "" {
		if _, err := os.Stat(opts.Seed); err != nil {
			return nil, fmt.Errorf("guest %s: seed: %w", name, err)
		}
		if seedAs == "" {
			seedAs = "virtio"
			if strings.HasSuffix(strings.ToLower(opts.Seed), ".iso") {
				seedAs = "cdrom"
			}
		}
		if seedAs != "cdrom" && seedAs != "virtio" {
			return nil, fmt.Errorf("guest %s: SeedAs %q: want \"cdrom\" or \"virtio\"", name, seedAs)
		}
	}
	for i, d := range opts.ExtraDrives {
		if _, err := os.Stat(d); err != nil {
			return nil, fmt.Errorf("guest %s: ExtraDrives[%d]: %w", name, i, err)
		}
	}
	for i, nic := range opts.NICs {
		hw, err := net.ParseMAC(nic.MAC)
		if err != nil || len(hw) != 6 {
			return nil, fmt.Errorf("guest %s: NICs[%d].MAC %q: want an Ethernet address like 52:54:00:12:34:56", name, i, nic.MAC)
		}
		if hw[0]&1 == 1 {
			return nil, fmt.Errorf("guest %s: NICs[%d].MAC %q is a multicast address", name, i, nic.MAC)
		}
	}
	seg := opts.Segment
	if len(opts.NICs) > 0 && seg == nil {
		seg = NewSegment(t)
	}

	dir := t.TempDir()
	g := &Guest{
		name:    name,
		dir:     dir,
		serial:  filepath.Join(dir, "serial.log"),
		qemuLog: filepath.Join(dir, "qemu.log"),
	}
	if err := g.makeDisk(img, opts.DiskMiB); err != nil {
		return nil, fmt.Errorf("guest %s: %w", name, err)
	}

	args := []string{
		"-name", name,
		"-accel", "tcg,tb-size=" + strconv.Itoa(tb),
		// Plain "max": "max,svm=off" (tried to keep kvm_amd from loading) breaks this guest
		// kernel under qemu 7.2 TCG: mount points in /proc/self/mountinfo read "xxx",
		// and systemd's mounts and udevd fail.
		"-cpu", "max",
		"-m", strconv.Itoa(mem),
		"-smp", strconv.Itoa(cpus),
		"-nodefaults", "-no-reboot", "-display", "none",
		"-kernel", img.Kernel,
		"-initrd", img.Initrd,
		"-append", strings.Join(append([]string{
			"root=/dev/vda", "rw", "console=ttyS0", "net.ifnames=0", "panic=-1",
			// -cpu max offers SVM; loading kvm for it costs seconds of TCG boot.
			"modprobe.blacklist=kvm,kvm_amd,kvm_intel",
			// Without it an SMP guest finds its TSCs "unsynchronized" and falls back to the
			// HPET, whose every read is an emulated MMIO access and a system call: a
			// time.monotonic() loop in the guest ran 2.4x slower (VM.md). Go programs read
			// the clock constantly.
			"tsc=reliable",
		}, opts.KernelArgs...), " "),
		"-drive", "file=" + qemuOpt(g.disk) + ",format=" + g.diskFmt + ",if=virtio,cache=unsafe",
		"-device", "virtio-rng-pci",
		// append=on: a guest that is hard-reset (HardReset) continues the same log.
		"-chardev", "file,id=ser0,append=on,path=" + qemuOpt(g.serial),
		"-serial", "chardev:ser0",
	}
	switch seedAs {
	case "cdrom":
		args = append(args, "-drive", "file="+qemuOpt(opts.Seed)+",format=raw,media=cdrom,readonly=on,if=ide,index=2")
	case "virtio":
		args = append(args, "-drive", "file="+qemuOpt(opts.Seed)+",format=raw,if=virtio,readonly=on")
	}
	for _, d := range opts.ExtraDrives {
		args = append(args, "-drive", "file="+qemuOpt(d)+",format=raw,if=virtio,readonly=on")
	}
	for i, nic := range opts.NICs {
		id := fmt.Sprintf("n%d", i)
		netdev, err := seg.netdev(id)
		if err != nil {
			return nil, fmt.Errorf("guest %s: %w", name, err)
		}
		args = append(args,
			"-netdev", netdev,
			"-device", "virtio-net-pci,netdev="+id+",mac="+nic.MAC)
	}
	argv := append([]string{"qemu-system-x86_64"}, args...)
	if len(opts.NICs) > 0 {
		// ip netns exec execs qemu in place, so the pid below is qemu's.
		argv = append([]string{"ip", "netns", "exec", seg.ns}, argv...)
	}

	g.argv = argv
	if err := g.launch(); err != nil {
		return nil, err
	}
	t.Logf("guest %s: qemu pid %d started (%d MiB, %d vCPU, %d NIC); serial log %s",
		name, g.cmd.Process.Pid, mem, cpus, len(opts.NICs), g.serial)
	t.Cleanup(func() { g.cleanup(t) })
	return g, nil
}

// launch starts qemu with g.argv, appending its output to the qemu log.
func (g *Guest) launch() error {
	logf, err := os.OpenFile(g.qemuLog, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("guest %s: %w", g.name, err)
	}
	cmd := exec.Command(g.argv[0], g.argv[1:]...)
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Setpgid: true,
		// If the test binary dies without cleanup (a -timeout panic), qemu dies with it.
		Pdeathsig: syscall.SIGKILL,
	}
	fmt.Fprintf(logf, "+ %s\n", shellJoin(g.argv))
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("guest %s: starting qemu: %w", g.name, err)
	}
	done := make(chan struct{})
	g.mu.Lock()
	g.cmd, g.done, g.exitErr, g.ended = cmd, done, nil, time.Time{}
	if g.started.IsZero() {
		g.started = time.Now()
	}
	g.mu.Unlock()
	go g.sampleRSS(cmd.Process.Pid, done)
	go func() {
		err := cmd.Wait()
		logf.Close()
		g.mu.Lock()
		g.exitErr = err
		g.ended = time.Now()
		g.mu.Unlock()
		close(done)
	}()
	return nil
}

// HardReset cuts the guest's power and switches it on again, as a reset button does: qemu is
// killed and started again on the same disk, so what the guest had not written back is lost.
// The serial log continues; Runtime keeps counting from the first power-on.
func (g *Guest) HardReset(t testing.TB) {
	t.Helper()
	g.kill(t)
	g.mu.Lock()
	g.rawDisk = ""
	g.mu.Unlock()
	if err := g.launch(); err != nil {
		t.Fatalf("hard reset: %v", err)
	}
	t.Logf("guest %s: hard reset after %s (qemu pid %d)", g.name, g.Runtime().Round(time.Second), g.cmd.Process.Pid)
}

// Renice sets the host scheduling niceness (0–19) of every qemu thread of the running guest;
// threads qemu starts later inherit it from the thread that starts them. When guests together
// have more vCPUs than the host has cores, every busy vCPU gets an equal share; a positive
// niceness gives a guest's vCPUs only what the others leave, as if the others were bigger
// machines.
func (g *Guest) Renice(t testing.TB, nice int) {
	t.Helper()
	g.mu.Lock()
	pid := g.cmd.Process.Pid
	g.mu.Unlock()
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		t.Errorf("guest %s: renice: %v", g.name, err)
		return
	}
	for _, task := range tasks {
		tid, err := strconv.Atoi(task.Name())
		if err != nil {
			continue
		}
		// On Linux PRIO_PROCESS with a thread id sets that thread's niceness.
		if err := syscall.Setpriority(syscall.PRIO_PROCESS, tid, nice); err != nil && !errors.Is(err, syscall.ESRCH) {
			t.Errorf("guest %s: renice thread %d: %v", g.name, tid, err)
		}
	}
	t.Logf("guest %s: qemu reniced to %d after %s", g.name, nice, g.Runtime().Round(time.Second))
}

// Stop switches the guest off at once (no shutdown), so that its disk can be read.
func (g *Guest) Stop(t testing.TB) {
	t.Helper()
	g.kill(t)
}

// kill kills qemu's process group and waits for it.
func (g *Guest) kill(t testing.TB) {
	g.mu.Lock()
	cmd, done := g.cmd, g.done
	g.mu.Unlock()
	select {
	case <-done:
		return
	default:
	}
	// The negative pid is the process group: qemu and anything it started.
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Errorf("guest %s: qemu pid %d did not exit 30 s after SIGKILL", g.name, cmd.Process.Pid)
	}
}

// makeDisk creates the guest's copy-on-write disk: a qcow2 overlay over the cached image, or,
// without qemu-img, a sparse (reflinked where the filesystem can) copy of it.
func (g *Guest) makeDisk(img *Image, diskMiB int) error {
	if diskMiB != 0 && diskMiB < img.SizeMiB {
		return fmt.Errorf("DiskMiB %d is smaller than the image (%d MiB)", diskMiB, img.SizeMiB)
	}
	if _, err := exec.LookPath("qemu-img"); err == nil {
		g.disk, g.diskFmt = filepath.Join(g.dir, "disk.qcow2"), "qcow2"
		args := []string{"create", "-q", "-f", "qcow2", "-b", img.Root, "-F", "raw", g.disk}
		if diskMiB > img.SizeMiB {
			args = append(args, fmt.Sprintf("%dM", diskMiB))
		}
		return runQuiet("qemu-img", args...)
	}
	g.disk, g.diskFmt = filepath.Join(g.dir, "disk.raw"), "raw"
	if err := runQuiet("cp", "--reflink=auto", "--sparse=always", img.Root, g.disk); err != nil {
		return err
	}
	if diskMiB > img.SizeMiB {
		if err := os.Truncate(g.disk, int64(diskMiB)<<20); err != nil {
			return fmt.Errorf("growing disk: %w", err)
		}
	}
	g.rawDisk = g.disk
	return nil
}

// sampleRSS records qemu's peak resident size (VmHWM) until it exits. VmHWM only grows, so the
// last sample before exit is the peak.
func (g *Guest) sampleRSS(pid int, done <-chan struct{}) {
	path := fmt.Sprintf("/proc/%d/status", pid)
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		if b, err := os.ReadFile(path); err == nil {
			for _, line := range strings.Split(string(b), "\n") {
				if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
					kib, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
					if err == nil {
						g.mu.Lock()
						g.hwmKiB = max(g.hwmKiB, kib)
						g.mu.Unlock()
					}
				}
			}
		}
		select {
		case <-done:
			return
		case <-tick.C:
		}
	}
}

// doneChan is closed when the current qemu process has exited.
func (g *Guest) doneChan() <-chan struct{} {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.done
}

func (g *Guest) cleanup(t testing.TB) {
	g.kill(t)
	if t.Failed() {
		t.Logf("guest %s: last %d lines of the serial log:\n%s", g.name, tailLines, g.serialTail())
		t.Logf("guest %s: qemu output:\n%s", g.name, tailFile(g.qemuLog, 20))
	}
	if dir := os.Getenv("KSBOOT_VM_ARTIFACTS"); dir != "" {
		dst := filepath.Join(dir, sanitize(t.Name()), g.name)
		if err := os.MkdirAll(dst, 0o755); err != nil {
			t.Logf("guest %s: keeping artifacts: %v", g.name, err)
			return
		}
		for _, f := range []string{g.serial, g.qemuLog} {
			if err := copyFile(f, filepath.Join(dst, filepath.Base(f))); err != nil {
				t.Logf("guest %s: keeping artifacts: %v", g.name, err)
			}
		}
	}
}

// WaitPoweroff waits until the guest powers off and qemu exits, or ctx ends (DefaultWait if ctx
// has no deadline). It fails if qemu exited for another reason (an error, a kernel panic or a
// reboot, which -no-reboot turns into an exit); every error quotes the serial log's tail.
func (g *Guest) WaitPoweroff(ctx context.Context) error {
	ctx, cancel := withDefaultDeadline(ctx)
	defer cancel()
	select {
	case <-g.doneChan():
	case <-ctx.Done():
		return fmt.Errorf("guest %s: no power-off %s after boot (%w); last %d lines of the serial log:\n%s",
			g.name, time.Since(g.started).Round(time.Second), ctx.Err(), tailLines, g.serialTail())
	}
	if err := g.exitError(); err != nil {
		return err
	}
	if !strings.Contains(g.SerialLog(), "reboot: Power down") {
		return fmt.Errorf("guest %s: qemu exited after %s without a power-off (reboot or kernel panic?); last %d lines of the serial log:\n%s",
			g.name, g.Runtime().Round(time.Second), tailLines, g.serialTail())
	}
	return nil
}

// exitError reports a qemu that failed, with its own output.
func (g *Guest) exitError() error {
	g.mu.Lock()
	err := g.exitErr
	g.mu.Unlock()
	if err == nil {
		return nil
	}
	return fmt.Errorf("guest %s: qemu failed: %w; qemu output:\n%s\nlast %d lines of the serial log:\n%s",
		g.name, err, tailFile(g.qemuLog, 20), tailLines, g.serialTail())
}

// WaitSerial waits until the serial log, as SerialLog shows it, matches re, or ctx ends
// (DefaultWait if ctx has no deadline), or qemu exits without the log matching. Each poll
// scans only new output plus the last 64 KiB before it, so a match must fit in 64 KiB; a long
// boot's megabytes of log are not rescanned four times a second. Errors quote the log's tail.
func (g *Guest) WaitSerial(ctx context.Context, re *regexp.Regexp) error {
	ctx, cancel := withDefaultDeadline(ctx)
	defer cancel()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	var seen int64
	for {
		// Read after checking for exit so that output written just before exit counts.
		exited := g.exited()
		var found bool
		found, seen = g.scanSerial(re, seen)
		if found {
			return nil
		}
		if exited {
			if err := g.exitError(); err != nil {
				return fmt.Errorf("waiting for serial log to match %q: %w", re, err)
			}
			return fmt.Errorf("guest %s: qemu exited after %s before the serial log matched %q; last %d lines of the serial log:\n%s",
				g.name, g.Runtime().Round(time.Second), re, tailLines, g.serialTail())
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("guest %s: serial log did not match %q within %s of boot (%w); last %d lines of the serial log:\n%s",
				g.name, re, time.Since(g.started).Round(time.Second), ctx.Err(), tailLines, g.serialTail())
		case <-g.doneChan():
		case <-tick.C:
		}
	}
}

// serialWindow is how much already scanned output WaitSerial scans again, so that a match
// split across two polls is found.
const serialWindow = 64 << 10

// scanSerial matches re against the serial log from serialWindow bytes before seen to the
// end, and returns the new end.
func (g *Guest) scanSerial(re *regexp.Regexp, seen int64) (bool, int64) {
	f, err := os.Open(g.serial)
	if err != nil {
		return false, seen
	}
	defer f.Close()
	from := max(0, seen-serialWindow)
	b, err := io.ReadAll(io.NewSectionReader(f, from, math.MaxInt64-from))
	if err != nil {
		return false, seen
	}
	return re.MatchString(cleanSerial(b)), from + int64(len(b))
}

// SerialLog returns everything the guest wrote to its serial console so far, without
// carriage returns and terminal escape sequences (systemd colours its status lines).
func (g *Guest) SerialLog() string {
	b, _ := os.ReadFile(g.serial)
	return cleanSerial(b)
}

var escapeSeq = regexp.MustCompile(`\x1b\[[0-9;?]*[ -/]*[@-~]`)

func cleanSerial(b []byte) string {
	return strings.ReplaceAll(escapeSeq.ReplaceAllString(string(b), ""), "\r", "")
}

// ReadFile returns the content of a regular file on the guest's root filesystem, read with
// debugfs from the guest's disk after qemu has exited; the disk is never mounted. A symbolic
// link in the last component is followed (at most 8 times). A missing file yields an error
// that wraps fs.ErrNotExist.
func (g *Guest) ReadFile(path string) ([]byte, error) {
	raw, err := g.stoppedDisk("reading", path)
	if err != nil {
		return nil, err
	}
	for range 8 {
		var stat []byte
		if path, stat, err = g.stat(raw, "reading", path); err != nil {
			return nil, err
		}
		switch {
		case bytes.Contains(stat, []byte("Type: regular")):
			out, err := debugfs(raw, "cat \""+path+"\"")
			if err != nil {
				return nil, fmt.Errorf("guest %s: reading %s: %w", g.name, path, err)
			}
			return out, nil
		case bytes.Contains(stat, []byte("Type: symlink")):
			var target string
			if m := fastLink.FindSubmatch(stat); m != nil {
				target = string(m[1])
			} else {
				// A long target lives in a data block, which cat prints.
				out, err := debugfs(raw, "cat \""+path+"\"")
				if err != nil || len(out) == 0 {
					return nil, fmt.Errorf("guest %s: reading symbolic link %s: %w", g.name, path, err)
				}
				target = string(out)
			}
			if !filepath.IsAbs(target) {
				target = filepath.Join(filepath.Dir(path), target)
			}
			path = target
		default:
			return nil, fmt.Errorf("guest %s: reading %s: not a regular file", g.name, path)
		}
	}
	return nil, fmt.Errorf("guest %s: reading %s: too many symbolic links", g.name, path)
}

// CopyDir copies a directory tree of the guest's root filesystem, read with debugfs from the
// guest's disk after qemu has exited, into dest/<base name of path> (dest must exist). The
// suite keeps the guests' pod logs this way: when a control-plane component restarts, its
// previous log is on the disk, and the serial console never had it.
func (g *Guest) CopyDir(path, dest string) error {
	if strings.ContainsAny(dest, unquotable) {
		return fmt.Errorf("guest %s: copying %s to %q: want a destination without quotes, backslashes or newlines", g.name, path, dest)
	}
	raw, err := g.stoppedDisk("copying", path)
	if err != nil {
		return err
	}
	path, stat, err := g.stat(raw, "copying", path)
	if err != nil {
		return err
	}
	if !bytes.Contains(stat, []byte("Type: directory")) {
		return fmt.Errorf("guest %s: copying %s: not a directory", g.name, path)
	}
	if _, err := debugfs(raw, "rdump \""+path+"\" \""+dest+"\""); err != nil {
		return fmt.Errorf("guest %s: copying %s: %w", g.name, path, err)
	}
	return nil
}

// stoppedDisk is the raw image of the guest's disk, once qemu has exited; op and path name
// what the caller is doing in its errors.
func (g *Guest) stoppedDisk(op, path string) (string, error) {
	if !g.exited() {
		return "", fmt.Errorf("guest %s: %s %s: the guest is still running; call WaitPoweroff first", g.name, op, path)
	}
	return g.raw()
}

// unquotable are the characters a path cannot hold inside debugfs's double quotes.
const unquotable = "\"\n\\"

// stat runs debugfs's stat on an absolute path of the image and returns the cleaned path and
// what stat printed; a missing path yields an error that wraps fs.ErrNotExist.
func (g *Guest) stat(raw, op, path string) (string, []byte, error) {
	if !filepath.IsAbs(path) || strings.ContainsAny(path, unquotable) {
		return path, nil, fmt.Errorf("guest %s: %s %q: want an absolute path without quotes, backslashes or newlines", g.name, op, path)
	}
	path = filepath.Clean(path)
	stat, err := debugfs(raw, "stat \""+path+"\"")
	if err != nil && strings.Contains(err.Error(), "File not found") {
		return path, nil, fmt.Errorf("guest %s: %s %s: %w", g.name, op, path, fs.ErrNotExist)
	}
	if err != nil {
		return path, nil, fmt.Errorf("guest %s: %s %s: %w", g.name, op, path, err)
	}
	return path, stat, nil
}

var fastLink = regexp.MustCompile(`Fast link dest: "([^"]*)"`)

// raw converts the qcow2 overlay to a sparse raw image once, because debugfs reads only raw.
func (g *Guest) raw() (string, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.rawDisk != "" {
		return g.rawDisk, nil
	}
	raw := filepath.Join(g.dir, "disk.raw")
	if err := runQuiet("qemu-img", "convert", "-f", g.diskFmt, "-O", "raw", g.disk, raw); err != nil {
		return "", fmt.Errorf("guest %s: converting disk for debugfs: %w", g.name, err)
	}
	g.rawDisk = raw
	return raw, nil
}

// debugfs runs one read-only debugfs request. debugfs reports most errors on stderr with
// exit status 0, so any stderr line besides its banner is an error. -c (catastrophic mode)
// skips the allocation bitmaps, which a read needs not: the disk of a guest stopped while it
// ran has bitmaps whose checksums do not match, and debugfs then opens nothing (run 27).
func debugfs(image, request string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "debugfs", "-c", "-R", request, image)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var msgs []string
	for _, line := range strings.Split(stderr.String(), "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "debugfs ") {
			msgs = append(msgs, line)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("debugfs -R %q %s: %w: %s", request, image, err, strings.Join(msgs, "; "))
	}
	if len(msgs) > 0 {
		return nil, fmt.Errorf("debugfs -R %q %s: %s", request, image, strings.Join(msgs, "; "))
	}
	return stdout.Bytes(), nil
}

// PeakRSS is qemu's peak resident set size in bytes (VmHWM, sampled every 250 ms while it ran).
func (g *Guest) PeakRSS() int64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.hwmKiB << 10
}

// Runtime is how long qemu has run: from start to exit, or to now while it runs.
func (g *Guest) Runtime() time.Duration {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.ended.IsZero() {
		return time.Since(g.started)
	}
	return g.ended.Sub(g.started)
}

func (g *Guest) exited() bool {
	select {
	case <-g.doneChan():
		return true
	default:
		return false
	}
}

func (g *Guest) serialTail() string { return tailString(g.SerialLog(), tailLines) }

// qemuOpt escapes a value inside a qemu option list, where a comma separates options.
func qemuOpt(v string) string { return strings.ReplaceAll(v, ",", ",,") }

func withDefaultDeadline(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, DefaultWait)
}

func runQuiet(name string, args ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %w: %s", shellJoin(cmd.Args), err, strings.TrimSpace(string(out)))
	}
	return nil
}

func tailFile(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(%v)", err)
	}
	return tailString(strings.ReplaceAll(string(b), "\r", ""), n)
}

func tailString(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func shellJoin(argv []string) string {
	quoted := make([]string, len(argv))
	for i, a := range argv {
		if a == "" || strings.ContainsAny(a, " \t\n\"'$\\;&|<>*?()") {
			a = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		quoted[i] = a
	}
	return strings.Join(quoted, " ")
}

func sanitize(s string) string {
	return regexp.MustCompile(`[^A-Za-z0-9._-]+`).ReplaceAllString(s, "_")
}
