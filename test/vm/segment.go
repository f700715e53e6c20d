package vm

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
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

// Namespace is the name of the segment's network namespace (ip netns exec NAME ...).
func (s *Segment) Namespace() string { return s.ns }

// netdev is qemu's -netdev value for a NIC on the segment.
func (s *Segment) netdev(id string) string {
	return fmt.Sprintf("socket,id=%s,mcast=%s:%d,localaddr=127.0.0.1", id, mcastGroup, s.port)
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
