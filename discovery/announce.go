package discovery

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/mdns"
	"github.com/miekg/dns"

	"github.com/ksboot/ksboot/cluster"
)

// placeholderPort fills the SRV record of a node that serves nothing yet. hashicorp/mdns refuses
// port 0 and its client drops entries without a port, so workers announce the "discard" port;
// readers use the api= entry, never the SRV port.
const placeholderPort = 9

// Announcement is what a node says about itself when it starts announcing.
type Announcement struct {
	Node  string // node name; required (a generic worker passes the name it derived)
	Role  string // cluster.RoleControlPlane or cluster.RoleWorker
	Phase string // current bootstrap phase
	API   string // host:port of an API server that answers; empty until one does
	// Addrs are announced in A/AAAA records. Empty means this host's own addresses on
	// Options.Interface (or the default-route interface), never what the host name resolves to.
	Addrs []net.IP
}

// AnnouncementFromNodeConfig starts a node's announcement from its config: its name and its role
// (control-plane when it runs one, worker otherwise).
func AnnouncementFromNodeConfig(nc *cluster.NodeConfig) Announcement {
	role := cluster.RoleWorker
	if nc.Node.IsControlPlane() {
		role = cluster.RoleControlPlane
	}
	return Announcement{Node: nc.Node.Name, Role: role}
}

// Announcer answers mDNS queries for this node until Close. Its record changes with SetPhase,
// SetAPI and SetError; the change is visible to the next query, because the announcer builds
// its answers when asked rather than handing hashicorp/mdns a fixed record.
type Announcer struct {
	opts     Options
	server   *mdns.Server
	instance string

	mu     sync.Mutex
	rec    Record
	since  time.Time // when rec.Phase began, on this process's monotonic clock
	addrs  []net.IP
	svc    *mdns.MDNSService // answers for the current SRV port; TXT is filled per query
	closed bool
}

// Announce starts answering queries for _ksboot._tcp with the node's record. The cluster name
// and id come from opts (the id from opts.ID, opts.Pin or opts.CAPEM).
func Announce(opts Options, a Announcement) (*Announcer, error) {
	opts = opts.normalized()
	if opts.Cluster == "" || opts.ID == "" {
		return nil, errors.New("announcing needs the cluster name and the cluster CA (for its id)")
	}
	rec := Record{Cluster: opts.Cluster, ID: opts.ID, Node: a.Node, Role: a.Role, Phase: a.Phase, API: a.API}
	if _, err := rec.EncodeTXT(); err != nil {
		return nil, fmt.Errorf("announcing node %s: %w", a.Node, err)
	}
	ifi, err := opts.iface()
	if err != nil {
		return nil, err
	}
	addrs := a.Addrs
	if len(addrs) == 0 {
		if addrs, err = localAddrs(ifi, opts.IPv6); err != nil {
			return nil, fmt.Errorf("announcing node %s: %w", a.Node, err)
		}
	}
	if !opts.IPv6 {
		addrs = onlyIPv4(addrs)
		if len(addrs) == 0 {
			return nil, fmt.Errorf("announcing node %s: no IPv4 address to announce and IPv6 is off (spec.discovery.ipv6)", a.Node)
		}
	}
	an := &Announcer{opts: opts, rec: rec, since: time.Now(), addrs: addrs, instance: instanceName(a.Node, opts.ID)}
	if err := an.rebuildLocked(); err != nil {
		return nil, fmt.Errorf("announcing node %s: %w", a.Node, err)
	}
	// hashicorp/mdns starts if either IPv4 or IPv6 can listen and drops the other's error, so a
	// node without an IPv4 multicast route would announce over IPv6 only, to nobody. Try IPv4
	// first, to fail with the kernel's reason.
	if err := canListenIPv4(ifi); err != nil {
		return nil, fmt.Errorf("announcing node %s: %w", a.Node, err)
	}
	srv, err := mdns.NewServer(&mdns.Config{Zone: an, Iface: ifi, Logger: opts.libLogger()})
	if err != nil {
		return nil, fmt.Errorf("announcing node %s: starting the mDNS responder: %w", a.Node, err)
	}
	an.server = srv
	opts.Logger.Info("announcing this node over mDNS", "node", a.Node, "role", a.Role, "phase", a.Phase,
		"cluster", opts.Cluster, "id", opts.ID, "addresses", fmt.Sprint(addrs), "instance", an.instance)
	return an, nil
}

// instanceName makes a DNS-SD instance name that is unique on the link. hashicorp/mdns's client
// merges every answer with the same instance name into one entry (first complete one wins), so
// two clusters with a node called "cp1", or two clones of one VM, would hide each other. The
// cluster id separates clusters; a random suffix separates clones and restarts.
func instanceName(node, id string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(node) {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') || r == '-' {
			b.WriteRune(r)
		} else {
			b.WriteByte('-')
		}
		if b.Len() == 38 { // 38 + 1 + 16 + 1 + 6 = 62, inside DNS's 63-byte label limit
			break
		}
	}
	suffix := make([]byte, 3)
	_, _ = rand.Read(suffix) // crypto/rand.Read never fails on Linux
	return b.String() + "-" + id + "-" + hex.EncodeToString(suffix)
}

func onlyIPv4(ips []net.IP) []net.IP {
	var out []net.IP
	for _, ip := range ips {
		if ip4 := ip.To4(); ip4 != nil {
			out = append(out, ip4)
		}
	}
	return out
}

// canListenIPv4 joins the mDNS group the way the responder will, and leaves again.
func canListenIPv4(ifi *net.Interface) error {
	c, err := net.ListenMulticastUDP("udp4", ifi, &net.UDPAddr{IP: net.IPv4(224, 0, 0, 251), Port: 5353})
	if err != nil {
		return fmt.Errorf("cannot listen for mDNS queries: %w (the node needs a multicast route: a default route, or set spec.discovery.interface)", err)
	}
	return c.Close()
}

// rebuildLocked makes the service that shapes the answers; the SRV port follows api=.
func (a *Announcer) rebuildLocked() error {
	port := placeholderPort
	if a.rec.API != "" {
		_, p, _ := net.SplitHostPort(a.rec.API)
		if n, err := strconv.Atoi(p); err == nil {
			port = n
		}
	}
	// The host name must be unique per announcer too: the client files A records under the SRV
	// target, so two announcers sharing a host name (network namespaces share the UTS name)
	// would swap addresses.
	svc, err := mdns.NewMDNSService(a.instance, Service, "local.", a.instance+".local.", port, a.addrs, nil)
	if err != nil {
		return err
	}
	a.svc = svc
	return nil
}

// Records implements mdns.Zone. It answers from a copy of the current record, with the time in
// phase measured now.
func (a *Announcer) Records(q dns.Question) []dns.RR {
	a.mu.Lock()
	svc, rec := *a.svc, a.rec
	rec.InPhase = time.Since(a.since)
	a.mu.Unlock()
	txt, err := rec.EncodeTXT()
	if err != nil { // cannot happen: every setter validates
		a.opts.Logger.Error("announcement cannot be encoded", "err", err)
		return nil
	}
	for i := range txt {
		txt[i] = escapeTXT(txt[i])
	}
	svc.TXT = txt
	return svc.Records(q)
}

// SetPhase announces a new bootstrap phase. The time in phase restarts; repeating the current
// phase changes nothing. The last error stays until SetError("") clears it, so that watchers
// still see why a phase was retried.
func (a *Announcer) SetPhase(phase string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if phase == a.rec.Phase {
		return
	}
	a.rec.Phase = phase
	a.since = time.Now()
	a.opts.Logger.Debug("announcing phase", "node", a.rec.Node, "phase", phase)
}

// SetAPI announces the host:port of an API server that answers (control planes, once kubeadm
// has started it); "" withdraws it.
func (a *Announcer) SetAPI(hostport string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	next := a.rec
	next.API = hostport
	if _, err := next.EncodeTXT(); err != nil {
		return fmt.Errorf("announcing the API address of node %s: %w", a.rec.Node, err)
	}
	prev := a.rec
	a.rec = next
	if err := a.rebuildLocked(); err != nil {
		a.rec = prev
		return fmt.Errorf("announcing the API address of node %s: %w", a.rec.Node, err)
	}
	return nil
}

// SetConsole announces the KubeSphere console URL (init node, after the kubesphere phase).
func (a *Announcer) SetConsole(url string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	next := a.rec
	next.Console = url
	if _, err := next.EncodeTXT(); err != nil {
		return fmt.Errorf("announcing the console of node %s: %w", a.rec.Node, err)
	}
	a.rec = next
	return nil
}

// SetError announces the node's last error (one line, truncated to fit); "" clears it.
func (a *Announcer) SetError(msg string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.rec.Error = msg
}

// Record returns what the announcer currently says.
func (a *Announcer) Record() Record {
	a.mu.Lock()
	defer a.mu.Unlock()
	r := a.rec
	r.InPhase = time.Since(a.since)
	return r
}

// Instance is the DNS-SD instance name the announcer answers for.
func (a *Announcer) Instance() string { return a.instance }

// Close stops answering. Other nodes stop seeing this one at their next query.
func (a *Announcer) Close() error {
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return nil
	}
	a.closed = true
	a.mu.Unlock()
	if err := a.server.Shutdown(); err != nil {
		return fmt.Errorf("stopping the mDNS responder: %w", err)
	}
	return nil
}
