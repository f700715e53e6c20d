package discovery

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// These scenarios run real announcers and finders as separate processes in separate network
// namespaces on one bridge: the sockets, multicast routing and TLS are the real thing.

type testCluster struct {
	name string
	ca   *testCA
}

func newTestCluster(t testing.TB, name string) testCluster {
	return testCluster{name: name, ca: newTestCA(t, "kubernetes")}
}

// controlPlane is the config of a control plane whose API answers with its cluster's CA.
func (c testCluster) controlPlane(node, phase string) helperConfig {
	return helperConfig{Mode: "announce", Cluster: c.name, Trust: string(c.ca.CertPEM), Node: node, Role: "control-plane",
		Phase: phase, ServeCA: string(c.ca.CertPEM), ServeKey: string(c.ca.KeyPEM), APIPort: 6443}
}

func (c testCluster) finder(timeout time.Duration) helperConfig {
	return helperConfig{Mode: "find", Cluster: c.name, Trust: string(c.ca.CertPEM), TimeoutMS: int(timeout / time.Millisecond)}
}

func (l *lan) announce(t *testing.T, name string, nd *lanNode, cfg helperConfig) *helperProc {
	t.Helper()
	p := l.start(name, nd, cfg)
	var r helperReady
	p.next(t, 30*time.Second, &r)
	if !r.Ready {
		t.Fatalf("announcer %s not ready", name)
	}
	return p
}

// findAll runs finders on nodes concurrently and returns their results in order.
func (l *lan) findAll(t *testing.T, nodes []*lanNode, cfg helperConfig) []helperResult {
	t.Helper()
	procs := make([]*helperProc, len(nodes))
	for i, nd := range nodes {
		c := cfg
		if i%2 == 1 {
			c.Interface = "eth0" // half of them pick the interface explicitly
		}
		procs[i] = l.start(fmt.Sprintf("finder-%d", i), nd, c)
	}
	return l.results(t, procs, time.Duration(cfg.TimeoutMS)*time.Millisecond+30*time.Second)
}

func (l *lan) results(t *testing.T, procs []*helperProc, timeout time.Duration) []helperResult {
	t.Helper()
	res := make([]helperResult, len(procs))
	for i, p := range procs {
		p.next(t, timeout, &res[i])
		p.wait(t, 10*time.Second)
		if res[i].Error == "" {
			t.Logf("%s found %s (node %s) after %d ms in round %d", p.name, res[i].Endpoint.Address, res[i].Endpoint.Node, res[i].ElapsedMS, res[i].Rounds)
		} else {
			t.Logf("%s: %s", p.name, res[i].Error)
		}
	}
	return res
}

func apiOf(nd *lanNode) string { return nd.ip.String() + ":6443" }

func TestNetnsOneControlPlaneThreeWorkers(t *testing.T) {
	l := newLAN(t, 4)
	c := newTestCluster(t, "sample")
	l.announce(t, "cp1", l.nodes[0], c.controlPlane("cp1", "addons"))
	for _, r := range l.findAll(t, l.nodes[1:], c.finder(20*time.Second)) {
		ep := r.Endpoint
		if r.Error != "" || ep.Address != apiOf(l.nodes[0]) || ep.Node != "cp1" || ep.Source != "mdns" || ep.CAPin != c.ca.Pin() {
			t.Errorf("result %+v", r)
		}
	}
}

func TestNetnsSeveralControlPlanes(t *testing.T) {
	l := newLAN(t, 4)
	c := newTestCluster(t, "sample")
	l.announce(t, "cp2", l.nodes[0], c.controlPlane("cp2", "joined"))
	l.announce(t, "cp1", l.nodes[1], c.controlPlane("cp1", "done"))
	for _, r := range l.findAll(t, l.nodes[2:3], c.finder(20*time.Second)) {
		// Every node tries the control planes in name order, so they agree on cp1.
		if r.Error != "" || r.Endpoint.Address != apiOf(l.nodes[1]) {
			t.Errorf("result %+v", r)
		}
	}
	snap := l.start("snapshot", l.nodes[3], helperConfig{Mode: "snapshot", Cluster: c.name, Trust: string(c.ca.CertPEM)})
	var tab Table
	snap.next(t, 30*time.Second, &tab)
	snap.wait(t, 10*time.Second)
	if tab.Conflict != "" || len(tab.Nodes) != 2 || tab.Nodes[0].Node != "cp1" || tab.Nodes[1].Node != "cp2" {
		t.Errorf("table %+v", tab)
	}
}

func TestNetnsTwoClustersSameName(t *testing.T) {
	l := newLAN(t, 6)
	a, b, c := newTestCluster(t, "sample"), newTestCluster(t, "sample"), newTestCluster(t, "sample")
	// Same cluster name and same node name: only the CA tells them apart.
	l.announce(t, "cp1-A", l.nodes[0], a.controlPlane("cp1", "done"))
	l.announce(t, "cp1-B", l.nodes[1], b.controlPlane("cp1", "done"))

	var wg sync.WaitGroup
	var ra, rb, rc []helperResult
	wg.Add(3)
	go func() { defer wg.Done(); ra = l.findAll(t, l.nodes[2:3], a.finder(20*time.Second)) }()
	go func() { defer wg.Done(); rb = l.findAll(t, l.nodes[3:4], b.finder(20*time.Second)) }()
	// Cluster C has no control plane: its node sees only A and B and must say so.
	go func() { defer wg.Done(); rc = l.findAll(t, l.nodes[4:5], c.finder(3*time.Second)) }()
	wg.Wait()
	if t.Failed() {
		return
	}
	if ra[0].Error != "" || ra[0].Endpoint.Address != apiOf(l.nodes[0]) {
		t.Errorf("cluster A's node found %+v", ra[0])
	}
	if rb[0].Error != "" || rb[0].Endpoint.Address != apiOf(l.nodes[1]) {
		t.Errorf("cluster B's node found %+v", rb[0])
	}
	if !rc[0].NotFound || rc[0].Endpoint.Address != "" {
		t.Errorf("cluster C's node: %+v", rc[0])
	}
	for _, want := range []string{"other clusters with the same name but a different CA", "id " + a.ca.ID() + ": node cp1 (" + l.nodes[0].ip.String(),
		"id " + b.ca.ID() + ": node cp1 (" + l.nodes[1].ip.String(), "different secrets directory"} {
		if !strings.Contains(rc[0].Error, want) {
			t.Errorf("cluster C's error lacks %q:\n%s", want, rc[0].Error)
		}
	}

	// Without a CA (ksboot watch --cluster sample) the two are a conflict.
	snap := l.start("snapshot", l.nodes[5], helperConfig{Mode: "snapshot", Cluster: "sample"})
	var tab Table
	snap.next(t, 30*time.Second, &tab)
	snap.wait(t, 10*time.Second)
	if !strings.Contains(tab.Conflict, `cluster name "sample" is announced by 2 clusters`) || len(tab.Nodes) != 2 {
		t.Errorf("snapshot without CA: %+v", tab)
	}
}

func TestNetnsForgedAnnouncer(t *testing.T) {
	l := newLAN(t, 4)
	real, evil := newTestCluster(t, "sample"), newTestCluster(t, "sample")
	// The forger copies the real cluster's name and id (both are on the wire for anyone to
	// read) but cannot get a certificate from the real CA. It names itself cp0 so that finders
	// try it before the real cp1.
	forged := evil.controlPlane("cp0", "done")
	forged.Cluster, forged.ID = real.name, real.ca.ID()
	l.announce(t, "forger", l.nodes[0], forged)

	r := l.findAll(t, l.nodes[2:3], real.finder(5*time.Second))[0]
	if r.Error == "" || !r.Untrusted || r.Endpoint.Address != "" {
		t.Fatalf("the forged endpoint was not refused: %+v", r)
	}
	for _, want := range []string{apiOf(l.nodes[0]) + " announced by node cp0", "not signed by this cluster's CA", real.ca.Pin(), "not used"} {
		if !strings.Contains(r.Error, want) {
			t.Errorf("error lacks %q:\n%s", want, r.Error)
		}
	}

	// With the real control plane up, the finder gets it, and reports the forger on the way.
	l.announce(t, "cp1", l.nodes[1], real.controlPlane("cp1", "done"))
	r = l.findAll(t, l.nodes[3:4], real.finder(20*time.Second))[0]
	if r.Error != "" || r.Endpoint.Address != apiOf(l.nodes[1]) {
		t.Fatalf("with the real control plane: %+v", r)
	}
	if len(r.Rejections) == 0 || !strings.Contains(r.Rejections[0], apiOf(l.nodes[0])) {
		t.Errorf("the forger was not reported through Progress: %v", r.Rejections)
	}
}

func TestNetnsControlPlaneAppearsLate(t *testing.T) {
	l := newLAN(t, 4)
	c := newTestCluster(t, "sample")
	var procs []*helperProc
	for i, nd := range l.nodes[1:] {
		procs = append(procs, l.start(fmt.Sprintf("finder-%d", i), nd, c.finder(30*time.Second)))
	}
	const late = 3 * time.Second
	time.Sleep(late)
	l.announce(t, "cp1", l.nodes[0], c.controlPlane("cp1", "addons"))
	for _, r := range l.results(t, procs, 60*time.Second) {
		if r.Error != "" || r.Endpoint.Address != apiOf(l.nodes[0]) {
			t.Errorf("result %+v", r)
		}
		if r.ElapsedMS < late.Milliseconds() || r.Rounds < 3 {
			t.Errorf("found after %d ms in %d rounds: the control plane was not there yet", r.ElapsedMS, r.Rounds)
		}
		// Back-off stops doubling at 4 s: nobody waits much longer than that after it appears.
		if r.ElapsedMS > (late + 7*time.Second).Milliseconds() {
			t.Errorf("found %d ms after start: too long after the control plane appeared", r.ElapsedMS)
		}
	}
}

func TestNetnsPacketLoss(t *testing.T) {
	l := newLAN(t, 4)
	how := l.setLoss(20)
	t.Logf("20%% loss on the bridge through %s", how)
	c := newTestCluster(t, "sample")
	l.announce(t, "cp1", l.nodes[0], c.controlPlane("cp1", "done"))
	// A TLS handshake that loses two segments waits out TCP's retransmission timers (1 s, 2 s)
	// and hits the 3 s handshake limit, so under 20% loss a finder can need many rounds; on a
	// loaded machine 30 s was once not enough for one of three. Nodes search for 30 minutes.
	for _, r := range l.findAll(t, l.nodes[1:], c.finder(90*time.Second)) {
		if r.Error != "" || r.Endpoint.Address != apiOf(l.nodes[0]) {
			t.Errorf("result %+v", r)
		}
	}
	if n := l.lossCounter(); n >= 0 {
		t.Logf("frames dropped by the loss rule: %d", n)
		if n == 0 {
			t.Error("the loss rule dropped nothing: the test did not test loss")
		}
	}
}

func TestNetnsPhaseChangeAndWatch(t *testing.T) {
	l := newLAN(t, 4)
	c := newTestCluster(t, "sample")
	cp := l.announce(t, "cp1", l.nodes[0], c.controlPlane("cp1", "kubeadm"))
	watch := l.start("watch", l.nodes[1], helperConfig{Mode: "watch", Cluster: c.name, Trust: string(c.ca.CertPEM), TimeoutMS: 60000})
	wait := l.start("waitfor", l.nodes[2], helperConfig{Mode: "waitfor", Cluster: c.name, Trust: string(c.ca.CertPEM),
		TimeoutMS: 30000, WaitNode: "cp1", WaitPhase: []string{"joined", "addons", "done"}})

	// until reads watch tables until one satisfies ok.
	until := func(what string, ok func(Row) bool) Row {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for time.Now().Before(deadline) {
			var tab Table
			watch.next(t, time.Until(deadline), &tab)
			for _, r := range tab.Nodes {
				if r.Node == "cp1" && ok(r) {
					return r
				}
			}
		}
		t.Fatalf("the watch never showed %s", what)
		return Row{}
	}
	until("phase kubeadm", func(r Row) bool { return r.Phase == "kubeadm" })
	time.Sleep(1500 * time.Millisecond) // let the waiter see "kubeadm" and keep waiting

	cp.send(t, "phase joined")
	var ready helperReady
	cp.next(t, 10*time.Second, &ready)
	cp.send(t, "error addons: flannel rollout timed out")
	cp.next(t, 10*time.Second, &ready)
	r := until("phase joined with the error", func(r Row) bool { return r.Phase == "joined" && r.LastError != "" })
	if r.LastError != "addons: flannel rollout timed out" || r.InPhaseSeconds > 5 || r.Role != "control-plane" || r.API != apiOf(l.nodes[0]) {
		t.Errorf("watch row after the change: %+v", r)
	}

	var wr helperResult
	wait.next(t, 30*time.Second, &wr)
	wait.wait(t, 10*time.Second)
	if wr.Error != "" || !containsString(wr.Peers, "cp1=joined") || wr.ElapsedMS < 1500 {
		t.Errorf("WaitFor: %+v", wr)
	}

	// `ksboot watch --once -o json` from another node shows the new phase as well.
	snap := l.start("snapshot", l.nodes[3], helperConfig{Mode: "snapshot", Cluster: c.name, Trust: string(c.ca.CertPEM)})
	var tab Table
	snap.next(t, 30*time.Second, &tab)
	snap.wait(t, 10*time.Second)
	if len(tab.Nodes) != 1 || tab.Nodes[0].Phase != "joined" || tab.Nodes[0].LastError == "" || tab.ID != c.ca.ID() {
		t.Errorf("snapshot %+v", tab)
	}
	watch.stdin.Close()
	watch.wait(t, 10*time.Second)
}

// TestNetnsSameHost checks that a node finds an API announced by another process on the same
// host (the init node looks for an existing cluster before running kubeadm init).
func TestNetnsSameHost(t *testing.T) {
	l := newLAN(t, 1)
	c := newTestCluster(t, "sample")
	l.announce(t, "cp1", l.nodes[0], c.controlPlane("cp1", "done"))
	r := l.findAll(t, l.nodes[:1], c.finder(10*time.Second))[0]
	if r.Error != "" || r.Endpoint.Address != apiOf(l.nodes[0]) {
		t.Errorf("result %+v", r)
	}
}

// TestNetnsNoMulticastRoute pins down a hashicorp/mdns habit: its client joins the mDNS group
// on the routing table's choice even when an interface is named, so a node without a default or
// multicast route cannot query. The error must say so instead of "nothing found".
func TestNetnsNoMulticastRoute(t *testing.T) {
	l := newLAN(t, 3)
	c := newTestCluster(t, "sample")
	ipBatch(t, l.nodes[0].ns, "route del 224.0.0.0/4 dev eth0")
	ipBatch(t, l.nodes[1].ns, "route del 224.0.0.0/4 dev eth0")

	// The responder joins on the named interface itself, so announcing works without a route.
	cp := c.controlPlane("cp1", "done")
	cp.Interface = "eth0"
	l.announce(t, "cp1", l.nodes[0], cp)
	r := l.findAll(t, l.nodes[2:3], c.finder(10*time.Second))[0]
	if r.Error != "" {
		t.Fatalf("a responder bound to eth0 without a multicast route was not found: %s", r.Error)
	}

	// Querying does not, even with the interface named.
	f := c.finder(2 * time.Second)
	f.Interface = "eth0"
	p := l.start("finder-noroute", l.nodes[1], f)
	p.next(t, 30*time.Second, &r)
	p.wait(t, 10*time.Second)
	for _, want := range []string{"the last query failed", "interface eth0 cannot join the mDNS group", "needs a default route"} {
		if !strings.Contains(r.Error, want) {
			t.Errorf("error lacks %q:\n%s", want, r.Error)
		}
	}

	// And a responder with no interface named says why it cannot start.
	bad := l.start("announce-noroute", l.nodes[1], c.controlPlane("cp2", "done"))
	select {
	case <-bad.done:
	case <-time.After(20 * time.Second):
		t.Fatal("the announcer without a route did not fail")
	}
	if !bad.grep("no such device") || !bad.grep("needs a multicast route") {
		t.Errorf("announcer error:\n%s", bad.stderr.String())
	}
}
