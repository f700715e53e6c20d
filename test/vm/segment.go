package vm

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// netnsPrefix starts the name of every namespace the harness creates: ksbt-<pid>-<n>.
const netnsPrefix = "ksbt-"

// mcastGroup is the multicast group qemu's socket NICs use. It only ever exists on the
// loopback device of a private namespace.
const mcastGroup = "230.0.0.1"

var netnsCounter atomic.Int64

// Segment is a private Ethernet segment for guests: a network namespace that holds only a
// loopback device, on which qemu's socket-multicast NICs of all guests attached to the segment
// see each other's frames. Nothing on the segment can reach the host's network, and frames of
// two segments never mix. Guests on a segment are started inside its namespace.
type Segment struct {
	ns   string
	port int

	// bridged segments: a bridge with one tap device per NIC instead of socket multicast.
	bridge string
	taps   atomic.Int64
}

// bridgeName is the bridge of a bridged segment inside its namespace.
const bridgeName = "br0"

// BridgeOptions describe a bridged segment.
type BridgeOptions struct {
	// HostAddress is the bridge's own address with prefix length ("10.77.0.1/24"): processes
	// started with Segment.Command use it to reach the guests.
	HostAddress string
	// DHCPRange, when set ("10.77.0.100,10.77.0.149"), runs dnsmasq on the bridge as the
	// segment's DHCP server, handing out addresses from the range with the bridge's address as
	// router and nameserver, for guests whose seed carries no network-config, and as its
	// resolver (DHCP names only; every other name is refused at once, nothing is forwarded).
	DHCPRange string
}

// NewSegment creates a private segment that is removed when the test ends (after the guests
// on it, which t.Cleanup stops first). It skips the test as Available does.
func NewSegment(t testing.TB) *Segment {
	t.Helper()
	Available(t)
	pruneStaleNamespaces(t)
	s := &Segment{
		ns:   fmt.Sprintf("%s%d-%d", netnsPrefix, os.Getpid(), netnsCounter.Add(1)),
		port: 20000 + rand.IntN(40000),
	}
	if err := ipCmd("netns", "add", s.ns); err != nil {
		t.Fatalf("creating segment: %v", err)
	}
	t.Cleanup(func() {
		if err := ipCmd("netns", "delete", s.ns); err != nil {
			t.Errorf("removing segment: %v", err)
		}
	})
	for _, args := range [][]string{
		{"-n", s.ns, "link", "set", "lo", "up"},
		{"-n", s.ns, "link", "set", "lo", "multicast", "on"},
		// Without a route the kernel has no interface for the group and qemu fails to send.
		{"-n", s.ns, "route", "add", "224.0.0.0/4", "dev", "lo"},
	} {
		if err := ipCmd(args...); err != nil {
			t.Fatalf("setting up segment %s: %v", s.ns, err)
		}
	}
	return s
}

// NewBridgedSegment creates a private segment on which the host side takes part: a bridge in
// the segment's namespace, one tap device per guest NIC, and the bridge's own address, so that
// processes started with Command (ksboot watch, kubectl, a Go test binary) see the segment as
// any machine on the LAN would, multicast included. Nothing is routed out of the namespace.
func NewBridgedSegment(t testing.TB, opts BridgeOptions) *Segment {
	t.Helper()
	s := NewSegment(t)
	s.bridge = bridgeName
	for _, args := range [][]string{
		{"-n", s.ns, "link", "add", bridgeName, "type", "bridge"},
		{"-n", s.ns, "addr", "add", opts.HostAddress, "dev", bridgeName},
		{"-n", s.ns, "link", "set", bridgeName, "up"},
		// mDNS leaves through the bridge, not lo (where the socket segment's group lives).
		{"-n", s.ns, "route", "replace", "224.0.0.0/4", "dev", bridgeName},
	} {
		if err := ipCmd(args...); err != nil {
			t.Fatalf("setting up bridged segment %s: %v", s.ns, err)
		}
	}
	if opts.DHCPRange != "" {
		s.startDHCP(t, opts)
	}
	return s
}

// startDHCP runs dnsmasq as the segment's DHCP server until the test ends.
func (s *Segment) startDHCP(t testing.TB, opts BridgeOptions) {
	t.Helper()
	router, _, _ := strings.Cut(opts.HostAddress, "/")
	dir := t.TempDir()
	cmd := exec.Command("ip", "netns", "exec", s.ns, "dnsmasq", "--keep-in-foreground", "--no-daemon",
		// DNS as a LAN resolver that knows only the segment's DHCP names: no upstream
		// (--no-resolv, no --server), so no query leaves the namespace, and every other name is
		// answered at once (REFUSED) instead of timing out. CoreDNS on a node forwards to it; a
		// resolver that never answered made CoreDNS's loop check resend its probe until it
		// counted a loop and exited, on a slow worker (e2e run 21).
		"--no-resolv", "--no-hosts",
		"--interface="+bridgeName, "--bind-interfaces", "--except-interface=lo",
		"--dhcp-range="+opts.DHCPRange+",12h", "--dhcp-option=option:router,"+router,
		"--dhcp-option=option:dns-server,"+router,
		"--dhcp-leasefile="+dir+"/leases", "--pid-file=", "--conf-file=/dev/null", "--log-dhcp")
	logf, err := os.Create(dir + "/dnsmasq.log")
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting dnsmasq on segment %s: %v (Debian package dnsmasq-base)", s.ns, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); logf.Close(); close(done) }()
	// Registered after NewSegment's cleanup, so it runs before the namespace is deleted.
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Errorf("dnsmasq on segment %s did not exit", s.ns)
		}
	})
}

// Namespace is the name of the segment's network namespace (ip netns exec NAME ...).
func (s *Segment) Namespace() string { return s.ns }

// Command runs name with args inside the segment's namespace (ip netns exec). On a bridged
// segment the process reaches the guests; on a socket segment it sees only loopback.
func (s *Segment) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", s.ns, name}, args...)...)
}

// netdev is qemu's -netdev value for a NIC on the segment. On a bridged segment it first
// creates the NIC's tap device on the bridge; qemu, run inside the namespace, opens it.
func (s *Segment) netdev(id string) (string, error) {
	if s.bridge == "" {
		return fmt.Sprintf("socket,id=%s,mcast=%s:%d,localaddr=127.0.0.1", id, mcastGroup, s.port), nil
	}
	tap := fmt.Sprintf("tap%d", s.taps.Add(1))
	for _, args := range [][]string{
		{"-n", s.ns, "tuntap", "add", "dev", tap, "mode", "tap"},
		{"-n", s.ns, "link", "set", tap, "master", s.bridge},
		{"-n", s.ns, "link", "set", tap, "up"},
	} {
		if err := ipCmd(args...); err != nil {
			return "", fmt.Errorf("creating tap device on segment %s: %w", s.ns, err)
		}
	}
	return fmt.Sprintf("tap,id=%s,ifname=%s,script=no,downscript=no", id, tap), nil
}

// ipCmd runs ip(8) with a deadline and reports its output on failure.
func ipCmd(args ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %w: %s", shellJoin(cmd.Args), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// pruneStaleNamespaces deletes namespaces of earlier test processes that died before their
// cleanup ran (a go test -timeout panic skips t.Cleanup). Only names of the harness's own
// form whose process is gone are touched.
func pruneStaleNamespaces(t testing.TB) {
	entries, err := os.ReadDir("/run/netns")
	if err != nil {
		return // no namespaces at all
	}
	for _, e := range entries {
		rest, ok := strings.CutPrefix(e.Name(), netnsPrefix)
		if !ok {
			continue
		}
		pidText, _, ok := strings.Cut(rest, "-")
		if !ok {
			continue
		}
		pid, err := strconv.Atoi(pidText)
		if err != nil || pid <= 0 || pid == os.Getpid() {
			continue
		}
		if err := syscall.Kill(pid, 0); err == nil || err == syscall.EPERM {
			continue // still alive
		}
		if err := ipCmd("netns", "delete", e.Name()); err != nil {
			t.Logf("removing stale segment %s: %v", e.Name(), err)
		} else {
			t.Logf("removed stale segment %s left by process %d", e.Name(), pid)
		}
	}
}

// EnterNamespace moves the calling thread into the named network namespace (/run/netns/NAME),
// so that sockets it opens afterwards live there. The caller must have locked its goroutine to
// the thread (runtime.LockOSThread) and should not unlock it: the thread then ends with the
// goroutine instead of going back to the scheduler while still in the namespace.
func EnterNamespace(name string) error {
	fd, err := unix.Open("/run/netns/"+name, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("opening namespace %s: %w", name, err)
	}
	defer unix.Close(fd)
	if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
		return fmt.Errorf("entering namespace %s: %w", name, err)
	}
	return nil
}

// InNamespace runs f on a thread of its own inside the named network namespace and returns
// what f returns; the thread is thrown away afterwards rather than returned to the scheduler
// while still in the namespace.
func InNamespace[T any](name string, f func() (T, error)) (T, error) {
	type out struct {
		v   T
		err error
	}
	ch := make(chan out, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
		if err := EnterNamespace(name); err != nil {
			ch <- out{err: err}
			return
		}
		v, err := f()
		ch <- out{v, err}
	}()
	o := <-ch
	return o.v, o.err
}
