package discovery

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ksboot/ksboot/test/vm"
)

// BenchmarkDiscovery measures how long N nodes take to get a verified endpoint from one control
// plane on one bridge, and how many mDNS packets that costs each node.
//
// The announcer is a separate process (the test binary re-executed in its namespace, with a real
// TLS server). The N browsers are goroutines of this process, each locked to its own OS thread
// that has entered its own network namespace: every browser has its own address, its own
// sockets and its own interface counters, as N machines would, without N processes of this
// binary on a 2-core machine. Find opens all its sockets on the calling goroutine, which is what
// makes this work.
//
// Packets are counted per namespace from /proc/thread-self/net/snmp (UDP datagrams: nothing but
// mDNS uses UDP in these namespaces) and /proc/thread-self/net/dev (every frame on eth0: mDNS,
// ARP, TCP/TLS).
//
//	go test -run XXX -bench BenchmarkDiscovery ./discovery/
func BenchmarkDiscovery(b *testing.B) {
	for _, n := range []int{10, 50, 100} {
		b.Run(fmt.Sprintf("browsers=%d", n), func(b *testing.B) { benchDiscovery(b, n) })
	}
}

type nsCounters struct{ udpIn, udpOut, rxPkts, txPkts int64 }

func (c nsCounters) sub(o nsCounters) nsCounters {
	return nsCounters{c.udpIn - o.udpIn, c.udpOut - o.udpOut, c.rxPkts - o.rxPkts, c.txPkts - o.txPkts}
}

func benchDiscovery(b *testing.B, n int) {
	l := newLAN(b, n+1)
	c := newTestCluster(b, "bench")
	ann := l.start("cp1", l.nodes[0], c.controlPlane("cp1", "done"))
	var r helperReady
	ann.next(b, 30*time.Second, &r)
	browsers := l.nodes[1:]
	opts := Options{Cluster: c.name, CAPEM: c.ca.CertPEM, Timeout: 30 * time.Second,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}

	var latencies []time.Duration
	var perNode []nsCounters
	var annTotal nsCounters
	failures := 0
	b.ResetTimer()
	for range b.N {
		annBefore, err := vm.InNamespace(l.nodes[0].ns, readCounters)
		if err != nil {
			b.Fatal(err)
		}
		type result struct {
			took time.Duration
			cnt  nsCounters
			err  error
		}
		res := make([]result, len(browsers))
		var ready, wg sync.WaitGroup
		start := make(chan struct{})
		ready.Add(len(browsers))
		wg.Add(len(browsers))
		for i, nd := range browsers {
			go func() {
				defer wg.Done()
				// Leave the thread locked: it is in another namespace, and a goroutine that ends
				// locked takes its thread with it instead of returning it to the scheduler.
				runtime.LockOSThread()
				if err := vm.EnterNamespace(nd.ns); err != nil {
					res[i].err = err
					ready.Done()
					return
				}
				before, err := readCounters()
				ready.Done()
				if err != nil {
					res[i].err = err
					return
				}
				<-start
				t0 := time.Now()
				ep, err := Find(context.Background(), opts)
				res[i].took = time.Since(t0)
				if err == nil && ep.Address != apiOf(l.nodes[0]) {
					err = fmt.Errorf("found %s", ep.Address)
				}
				after, cerr := readCounters()
				if err == nil {
					err = cerr
				}
				res[i].err = err
				res[i].cnt = after.sub(before)
			}()
		}
		ready.Wait()
		close(start)
		wg.Wait()
		annAfter, err := vm.InNamespace(l.nodes[0].ns, readCounters)
		if err != nil {
			b.Fatal(err)
		}
		annTotal = annTotal.add(annAfter.sub(annBefore))
		for _, r := range res {
			if r.err != nil {
				failures++
				b.Logf("browser failed (its UDP in/out %d/%d, frames rx/tx %d/%d): %v", r.cnt.udpIn, r.cnt.udpOut, r.cnt.rxPkts, r.cnt.txPkts, r.err)
				continue
			}
			latencies = append(latencies, r.took)
			perNode = append(perNode, r.cnt)
		}
	}
	b.StopTimer()
	if len(latencies) == 0 {
		b.Fatal("no browser found the control plane")
	}
	slices.Sort(latencies)
	pct := func(p float64) time.Duration { return latencies[min(len(latencies)-1, int(p*float64(len(latencies))))] }
	var sum nsCounters
	for _, c := range perNode {
		sum = sum.add(c)
	}
	k := float64(len(perNode))
	runs := float64(b.N)
	b.ReportMetric(float64(pct(0.50).Milliseconds()), "p50-ms")
	b.ReportMetric(float64(pct(0.99).Milliseconds()), "p99-ms")
	b.ReportMetric(float64(latencies[len(latencies)-1].Milliseconds()), "max-ms")
	b.ReportMetric(float64(sum.udpOut)/k, "mdns-sent/node")
	b.ReportMetric(float64(sum.udpIn)/k, "mdns-recv/node")
	b.ReportMetric(float64(sum.rxPkts+sum.txPkts)/k, "frames/node")
	b.ReportMetric(float64(annTotal.udpIn)/runs, "ann-mdns-recv/run")
	b.ReportMetric(float64(annTotal.udpOut)/runs, "ann-mdns-sent/run")
	b.ReportMetric(float64(failures), "failures")
	if failures > 0 {
		b.Errorf("%d of %d browsers failed; the announcer received %d and sent %d mDNS datagrams; its log:\n%s",
			failures, failures+len(latencies), annTotal.udpIn, annTotal.udpOut, ann.stderr.String())
	}
	if p99 := pct(0.99); n == 100 && p99 > 2*time.Second {
		b.Logf("p99 %v is over the 2 s goal at N=100", p99)
	}
}

func (c nsCounters) add(o nsCounters) nsCounters {
	return nsCounters{c.udpIn + o.udpIn, c.udpOut + o.udpOut, c.rxPkts + o.rxPkts, c.txPkts + o.txPkts}
}

// readCounters reads the calling thread's namespace's UDP and eth0 counters.
func readCounters() (nsCounters, error) {
	var c nsCounters
	snmp, err := os.ReadFile("/proc/thread-self/net/snmp")
	if err != nil {
		return c, err
	}
	var head []string
	for _, line := range strings.Split(string(snmp), "\n") {
		fs := strings.Fields(line)
		if len(fs) == 0 || fs[0] != "Udp:" {
			continue
		}
		if head == nil {
			head = fs
			continue
		}
		for i, name := range head {
			v, _ := strconv.ParseInt(fs[i], 10, 64)
			switch name {
			case "InDatagrams":
				c.udpIn = v
			case "OutDatagrams":
				c.udpOut = v
			}
		}
	}
	dev, err := os.ReadFile("/proc/thread-self/net/dev")
	if err != nil {
		return c, err
	}
	for _, line := range strings.Split(string(dev), "\n") {
		name, rest, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok || name != "eth0" {
			continue
		}
		fs := strings.Fields(rest)
		if len(fs) >= 10 {
			c.rxPkts, _ = strconv.ParseInt(fs[1], 10, 64)
			c.txPkts, _ = strconv.ParseInt(fs[9], 10, 64)
		}
	}
	return c, nil
}
