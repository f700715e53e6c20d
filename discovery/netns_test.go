package discovery

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// This file builds private Ethernet segments out of network namespaces for the multi-host tests:
// a bridge in a namespace of its own ("hub") and one namespace per node, joined by veth pairs.
// Nothing is attached to the host's namespace and every node routes 224.0.0.0/4 to its veth, so
// no test packet, multicast or not, can reach the host's real network.

var nsSeq atomic.Int32

// requireNetns skips tests that need root and iproute2, with the reason.
func requireNetns(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("network-namespace test: skipped under -short")
	}
	if os.Geteuid() != 0 {
		t.Skip("network-namespace test: needs root to create namespaces (run go test as root)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("network-namespace test: the ip command (iproute2) is not installed")
	}
}

type lan struct {
	t      testing.TB
	hub    string
	subnet [2]byte // 10.subnet[0].subnet[1].0/24, random so that parallel runs never look alike
	nodes  []*lanNode
	mu     sync.Mutex
	procs  []*helperProc
}

type lanNode struct {
	ns   string // namespace name
	port string // the bridge port (in the hub namespace) facing this node
	ip   net.IP
}

func nsName() string { return fmt.Sprintf("ksb-%d-%d", os.Getpid(), nsSeq.Add(1)) }

// newLAN creates the hub with its bridge and n nodes. Everything is removed at cleanup, also
// when the test fails half-way.
func newLAN(t testing.TB, n int) *lan {
	t.Helper()
	requireNetns(t)
	sweepStaleNamespaces(t)
	a, _ := rand.Int(rand.Reader, big.NewInt(254))
	b, _ := rand.Int(rand.Reader, big.NewInt(254))
	l := &lan{t: t, hub: nsName(), subnet: [2]byte{byte(a.Int64() + 1), byte(b.Int64())}}
	t.Cleanup(l.destroy)
	ipBatch(t, "", "netns add "+l.hub)
	ipBatch(t, l.hub, "link set lo up", "link add br0 type bridge mcast_snooping 0", "link set br0 up")
	l.addNodes(n)
	return l
}

// addNodes attaches n more nodes. Commands go through `ip -batch` so that a hundred nodes take a
// few hundred milliseconds, not a thousand process starts.
func (l *lan) addNodes(n int) []*lanNode {
	l.t.Helper()
	first := len(l.nodes)
	if first+n > 250 {
		l.t.Fatalf("a /24 holds 250 test nodes, asked for %d", first+n)
	}
	var add, hub []string
	var added []*lanNode
	for i := first; i < first+n; i++ {
		nd := &lanNode{ns: nsName(), port: fmt.Sprintf("p%d", i), ip: net.IPv4(10, l.subnet[0], l.subnet[1], byte(i+2)).To4()}
		l.nodes = append(l.nodes, nd)
		added = append(added, nd)
		add = append(add, "netns add "+nd.ns)
		hub = append(hub, fmt.Sprintf("link add %s type veth peer name eth0 netns %s", nd.port, nd.ns),
			fmt.Sprintf("link set %s master br0", nd.port), fmt.Sprintf("link set %s up", nd.port))
	}
	ipBatch(l.t, "", add...)
	ipBatch(l.t, l.hub, hub...)
	for _, nd := range added {
		ipBatch(l.t, nd.ns, "link set lo up", fmt.Sprintf("addr add %s/24 dev eth0", nd.ip), "link set eth0 up",
			// mDNS needs a multicast route; without it the kernel cannot pick an interface.
			"route add 224.0.0.0/4 dev eth0")
	}
	return added
}

// setLoss drops pct% of the frames the bridge forwards, in both directions on every port.
// tc netem is the usual tool; kernels built without sch_netem (like this VM's) get the same
// effect from an nftables bridge rule with a random number generator.
func (l *lan) setLoss(pct int) string {
	l.t.Helper()
	var errs []string
	for _, nd := range l.nodes {
		out, err := exec.Command("tc", "-n", l.hub, "qdisc", "add", "dev", nd.port, "root", "netem", "loss", fmt.Sprintf("%d%%", pct)).CombinedOutput()
		if err != nil {
			errs = append(errs, strings.TrimSpace(string(out)))
			break
		}
	}
	if len(errs) == 0 {
		return "tc netem"
	}
	if _, err := exec.LookPath("nft"); err != nil {
		l.t.Skipf("packet loss: tc netem failed (%s) and nft is not installed (apt-get install nftables)", errs[0])
	}
	rules := fmt.Sprintf("table bridge ksbloss {\n chain lossy {\n  type filter hook forward priority 0; policy accept;\n  numgen random mod 100 < %d counter drop\n }\n}\n", pct)
	cmd := exec.Command("ip", "netns", "exec", l.hub, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(rules)
	if out, err := cmd.CombinedOutput(); err != nil {
		l.t.Skipf("packet loss: tc netem failed (%s) and nft failed: %v: %s", errs[0], err, out)
	}
	return "nftables numgen (tc netem unavailable: " + errs[0] + ")"
}

// lossCounter reports how many frames the nftables loss rule dropped, or -1.
func (l *lan) lossCounter() int {
	out, err := exec.Command("ip", "netns", "exec", l.hub, "nft", "list", "table", "bridge", "ksbloss").CombinedOutput()
	if err != nil {
		return -1
	}
	m := regexp.MustCompile(`counter packets (\d+)`).FindSubmatch(out)
	if m == nil {
		return -1
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n
}

func (l *lan) destroy() {
	l.mu.Lock()
	procs := l.procs
	l.mu.Unlock()
	for _, p := range procs {
		p.kill()
	}
	cmds := []string{"netns del " + l.hub}
	for _, nd := range l.nodes {
		cmds = append(cmds, "netns del "+nd.ns)
	}
	cmd := exec.Command("ip", "-force", "-batch", "-")
	cmd.Stdin = strings.NewReader(strings.Join(cmds, "\n") + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		l.t.Logf("removing test namespaces: %v: %s", err, out)
	}
}

func ipBatch(t testing.TB, ns string, cmds ...string) {
	t.Helper()
	args := []string{"-batch", "-"}
	if ns != "" {
		args = append([]string{"-n", ns}, args...)
	}
	cmd := exec.Command("ip", args...)
	cmd.Stdin = strings.NewReader(strings.Join(cmds, "\n") + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// sweepStaleNamespaces removes namespaces left by test processes that were killed before their
// cleanup ran (their pid is in the name).
func sweepStaleNamespaces(t testing.TB) {
	ents, err := os.ReadDir("/run/netns")
	if err != nil {
		return
	}
	re := regexp.MustCompile(`^ksb-(\d+)-\d+$`)
	for _, e := range ents {
		m := re.FindStringSubmatch(e.Name())
		if m == nil {
			continue
		}
		pid, _ := strconv.Atoi(m[1])
		if pid == os.Getpid() || syscall.Kill(pid, 0) != syscall.ESRCH {
			continue
		}
		if out, err := exec.Command("ip", "netns", "del", e.Name()).CombinedOutput(); err != nil {
			t.Logf("removing stale namespace %s: %v: %s", e.Name(), err, out)
		}
	}
}

// helperProc is the test binary re-executed inside a namespace as one node (TestHelperProcess).
type helperProc struct {
	name   string
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	lines  chan string
	stderr *syncBuffer
	done   chan struct{}
	err    error
	once   sync.Once
}

// start runs a helper as node nd. Its stdout lines are JSON messages; stderr is its log.
func (l *lan) start(name string, nd *lanNode, cfg helperConfig) *helperProc {
	l.t.Helper()
	cfg.IP = nd.ip.String()
	js, err := json.Marshal(cfg)
	if err != nil {
		l.t.Fatal(err)
	}
	exe, err := filepath.Abs(os.Args[0])
	if err != nil {
		l.t.Fatal(err)
	}
	cmd := exec.Command("ip", "netns", "exec", nd.ns, exe, "-test.run=^TestHelperProcess$", "-test.timeout=5m")
	cmd.Env = append(os.Environ(), helperEnv+"="+string(js))
	// No Pdeathsig: it fires when the OS thread that forked the child exits, and the benchmark
	// ends threads on purpose (a goroutine that dies locked to a thread in another namespace
	// takes the thread with it), which killed announcers in the middle of a run. A helper
	// instead exits when its stdin reaches EOF, which also happens when this process dies.
	p := &helperProc{name: name, cmd: cmd, lines: make(chan string, 256), stderr: &syncBuffer{}, done: make(chan struct{})}
	cmd.Stderr = p.stderr
	if p.stdin, err = cmd.StdinPipe(); err != nil {
		l.t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		l.t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		l.t.Fatalf("starting helper %s: %v", name, err)
	}
	l.mu.Lock()
	l.procs = append(l.procs, p)
	l.mu.Unlock()
	go func() {
		s := bufio.NewScanner(stdout)
		s.Buffer(make([]byte, 1<<20), 1<<20)
		for s.Scan() {
			select {
			case p.lines <- s.Text():
			default: // a test that stopped reading must not block the helper
			}
		}
		p.err = cmd.Wait()
		close(p.lines)
		close(p.done)
	}()
	return p
}

// next waits for the next stdout message of the helper.
func (p *helperProc) next(t testing.TB, timeout time.Duration, v any) {
	t.Helper()
	select {
	case line, ok := <-p.lines:
		if !ok {
			<-p.done
			t.Fatalf("helper %s exited (%v) without a message; its log:\n%s", p.name, p.err, p.stderr.String())
		}
		if err := json.Unmarshal([]byte(line), v); err != nil {
			t.Fatalf("helper %s said %q: %v", p.name, line, err)
		}
	case <-time.After(timeout):
		t.Fatalf("helper %s said nothing for %v; its log:\n%s", p.name, timeout, p.stderr.String())
	}
}

// send writes a command line to the helper's stdin.
func (p *helperProc) send(t testing.TB, line string) {
	t.Helper()
	if _, err := io.WriteString(p.stdin, line+"\n"); err != nil {
		t.Fatalf("helper %s: %v", p.name, err)
	}
}

// wait waits for the helper to exit and fails the test on a non-zero exit (a data race in a
// helper built with -race exits 66).
func (p *helperProc) wait(t testing.TB, timeout time.Duration) {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(timeout):
		p.kill()
		t.Fatalf("helper %s did not exit within %v; its log:\n%s", p.name, timeout, p.stderr.String())
	}
	if p.err != nil {
		t.Fatalf("helper %s failed: %v; its log:\n%s", p.name, p.err, p.stderr.String())
	}
}

func (p *helperProc) kill() {
	p.once.Do(func() {
		p.stdin.Close()
		select {
		case <-p.done:
			return
		case <-time.After(3 * time.Second):
		}
		_ = p.cmd.Process.Kill()
		<-p.done
	})
}

// grep reports whether the helper's log contains s.
func (p *helperProc) grep(s string) bool { return bytes.Contains([]byte(p.stderr.String()), []byte(s)) }
