package discovery

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/mdns"
)

// maxEntries bounds what one query round keeps. hashicorp/mdns drops answers it cannot hand over
// at once (its send on the entries channel never blocks), so the channel is buffered and drained
// by a goroutine; a thousand nodes answering one query is already beyond any sane LAN.
const maxEntries = 1024

// Peer is one node seen in one query round: its record plus where it answered from.
type Peer struct {
	Record
	Instance string     // DNS-SD instance name
	Addr     netip.Addr // announced address (hashicorp/mdns keeps the last A record only)
	Seen     time.Time  // when the round that saw it ended
}

// String names the peer for messages: "node cp1 (10.0.0.2, control-plane, phase kubeadm)".
func (p Peer) String() string {
	var extra []string
	if p.Addr.IsValid() {
		extra = append(extra, p.Addr.String())
	}
	extra = append(extra, p.Role)
	if p.Phase != "" {
		extra = append(extra, "phase "+p.Phase)
	}
	return fmt.Sprintf("node %s (%s)", p.Node, strings.Join(extra, ", "))
}

// Browse runs one query round and returns the ksboot nodes that answered, filtered to
// opts.Cluster when it is set. Peers of every CA id are returned (the caller compares ID); when
// opts.ID is empty and one cluster name shows several ids, the peers come back with a
// *ConflictError, because nobody can tell which of them is meant.
func Browse(ctx context.Context, opts Options) ([]Peer, error) {
	opts = opts.normalized()
	peers, err := opts.queryRound(ctx, opts.tune.maxWindow)
	if err != nil {
		return nil, err
	}
	if opts.ID == "" {
		if err := Conflicts(peers); err != nil {
			return peers, err
		}
	}
	return peers, nil
}

// queryRound asks once for _ksboot._tcp and collects answers for window.
//
// hashicorp/mdns hands each entry over as a pointer and keeps writing to it when further packets
// name the same instance, and its QueryContext returns only when the window ends, even after
// cancellation. So entries are read only after the query has returned: collecting is concurrent,
// decoding is not. It also creates its sockets on the calling goroutine, which the benchmark
// relies on to put each browser in its own network namespace.
func (o Options) queryRound(ctx context.Context, window time.Duration) ([]Peer, error) {
	if dl, ok := ctx.Deadline(); ok {
		window = min(window, time.Until(dl))
	}
	if window <= 0 {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		return nil, context.DeadlineExceeded
	}
	ifi, err := o.iface()
	if err != nil {
		return nil, err
	}
	ch := make(chan *mdns.ServiceEntry, maxEntries)
	var got []*mdns.ServiceEntry
	done := make(chan struct{})
	go func() {
		defer close(done)
		for e := range ch {
			got = append(got, e)
		}
	}()
	qerr := mdns.QueryContext(ctx, &mdns.QueryParam{
		Service:     Service,
		Domain:      "local",
		Timeout:     window,
		Interface:   ifi,
		Entries:     ch,
		DisableIPv6: !o.IPv6,
		Logger:      o.libLogger(),
	})
	close(ch)
	<-done
	if qerr != nil {
		return nil, fmt.Errorf("querying mDNS for %s: %w", Service, explainQueryError(ifi, qerr))
	}
	now := time.Now()
	var peers []Peer
	seen := map[string]bool{}
	for _, e := range got {
		if seen[e.Name] {
			continue
		}
		seen[e.Name] = true
		p, err := peerFromEntry(e, now)
		if err != nil {
			o.Logger.Debug("ignoring an mDNS answer", "instance", e.Name, "err", err)
			continue
		}
		if o.Cluster != "" && p.Cluster != o.Cluster {
			continue
		}
		peers = append(peers, p)
	}
	slices.SortFunc(peers, func(a, b Peer) int {
		return strings.Compare(a.Cluster+"\x00"+a.Node+"\x00"+a.Instance, b.Cluster+"\x00"+b.Node+"\x00"+b.Instance)
	})
	return peers, nil
}

func peerFromEntry(e *mdns.ServiceEntry, now time.Time) (Peer, error) {
	fields := make([]string, len(e.InfoFields))
	for i, f := range e.InfoFields {
		fields[i] = unescapeTXT(f)
	}
	rec, err := DecodeTXT(fields)
	if err != nil {
		return Peer{}, err
	}
	p := Peer{Record: rec, Instance: strings.TrimSuffix(e.Name, "."+Service+".local."), Seen: now}
	switch {
	case e.AddrV4 != nil:
		p.Addr, _ = netip.AddrFromSlice(e.AddrV4.To4())
	case e.AddrV6IPAddr != nil:
		if a, ok := netip.AddrFromSlice(e.AddrV6IPAddr.IP); ok {
			p.Addr = a.WithZone(e.AddrV6IPAddr.Zone)
		}
	}
	return p, nil
}

// explainQueryError adds what to do to the socket errors a query can hit. hashicorp/mdns joins
// the multicast group on the interface the routing table picks for 224.0.0.251, even when
// QueryParam.Interface is set (that only steers outgoing queries), and it logs the kernel's
// reason ("no such device") instead of returning it; so a node without a default route cannot
// query at all, whatever interface it names.
func explainQueryError(ifi *net.Interface, err error) error {
	where := "the node"
	if ifi != nil {
		where = "interface " + ifi.Name
	}
	if strings.Contains(err.Error(), "multicast") {
		return fmt.Errorf("%w (%s cannot join the mDNS group: the node needs a default route, or a multicast route such as `ip route add 224.0.0.0/4 dev <interface>`)", err, where)
	}
	return fmt.Errorf("%w (on %s)", err, where)
}
