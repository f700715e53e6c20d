package discovery

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/ksboot/ksboot/cluster"
)

// maxRounds bounds every search loop on top of its deadline, so that a clock jump or a mistake
// in the back-off can never make it spin forever.
const maxRounds = 10000

// maxRemembered bounds the foreign peers and rejections a search keeps for its final message.
const maxRemembered = 16

// Endpoint is a verified API server address.
type Endpoint struct {
	Address string // host:port; its TLS certificate chains to the cluster CA
	Node    string // the node that announced it; empty for a static endpoint
	Role    string
	Phase   string
	Source  string // "mdns" or "static"
	CAPin   string // the pin of the CA the certificate chains to
	Subject string // subject of the server certificate
}

// Find searches the network for a control plane of opts.Cluster whose announcement carries the
// cluster's CA id and an api= address, verifies that address with TLS against opts.CAPEM and
// returns the first one that passes. Announcements of other CAs are ignored and endpoints that
// fail verification are never returned; both are reported through opts.Logger, opts.Progress
// and, if nothing valid turns up before the deadline, the returned *NotFoundError.
//
// Find queries repeatedly with back-off until ctx's deadline (or opts.Timeout, or
// DefaultTimeout): hashicorp/mdns sends a query once, and a control plane may come up long after
// its workers start looking.
func Find(ctx context.Context, opts Options) (Endpoint, error) {
	opts = opts.normalized()
	tr, err := opts.trust()
	if err != nil {
		return Endpoint{}, err
	}
	if opts.Cluster == "" {
		return Endpoint{}, errors.New("finding the control plane needs the cluster name")
	}
	if opts.ID == "" {
		opts.ID = cluster.ClusterID(tr.pin)
	}
	ctx, cancel := opts.withDeadline(ctx)
	defer cancel()
	s := newSearch(opts, fmt.Sprintf("a control plane of cluster %q (CA id %s) to announce an API endpoint that verifies", opts.Cluster, opts.ID))
	var found Endpoint
	err = s.run(ctx, func(ctx context.Context, window time.Duration) (bool, error) {
		mine, err := s.queryMine(ctx, window)
		if err != nil {
			return false, err
		}
		for _, p := range candidates(mine) {
			leaf, err := verifyEndpoint(ctx, p.API, tr, opts.tune.dialTimeout)
			if err != nil {
				s.reject(ctx, Rejection{Peer: p, Addr: p.API, Err: err})
				continue
			}
			found = Endpoint{Address: p.API, Node: p.Node, Role: p.Role, Phase: p.Phase, Source: "mdns", CAPin: tr.pin, Subject: leaf.Subject.String()}
			return true, nil
		}
		return false, nil
	})
	if err != nil {
		return Endpoint{}, fmt.Errorf("finding the control plane of cluster %q: %w", opts.Cluster, err)
	}
	opts.Logger.Info("found the control plane", "address", found.Address, "node", found.Node, "phase", found.Phase, "after", s.elapsed().Round(time.Millisecond))
	return found, nil
}

// candidates orders the peers worth a TLS handshake: those with api=, control planes first, then
// by node name so that every node tries the same one first; one handshake per address.
func candidates(peers []Peer) []Peer {
	var out []Peer
	seen := map[string]bool{}
	for _, p := range peers {
		if p.API != "" && !seen[p.API] {
			seen[p.API] = true
			out = append(out, p)
		}
	}
	slices.SortStableFunc(out, func(a, b Peer) int {
		ac, bc := a.Role == cluster.RoleControlPlane, b.Role == cluster.RoleControlPlane
		if ac != bc {
			if ac {
				return -1
			}
			return 1
		}
		return cmp.Compare(a.Node, b.Node)
	})
	return out
}

// FindStatic waits for the API server at a fixed hostport to answer with a certificate that
// chains to the CA in caPEM, with the same back-off and deadline as Find (DefaultTimeout when ctx
// has none). Progress goes to slog.Default(); FindStaticWith takes Options.
func FindStatic(ctx context.Context, hostport string, caPEM []byte) (Endpoint, error) {
	return FindStaticWith(ctx, hostport, Options{CAPEM: caPEM})
}

// FindStaticWith is FindStatic with the CA, pin, timeout, logger and progress callback of opts.
func FindStaticWith(ctx context.Context, hostport string, opts Options) (Endpoint, error) {
	opts = opts.normalized()
	if err := validHostPort(hostport); err != nil {
		return Endpoint{}, fmt.Errorf("control plane endpoint %q: %w", hostport, err)
	}
	tr, err := opts.trust()
	if err != nil {
		return Endpoint{}, err
	}
	ctx, cancel := opts.withDeadline(ctx)
	defer cancel()
	s := newSearch(opts, fmt.Sprintf("the API server at %s to answer with a certificate of this cluster's CA", hostport))
	s.static = true
	var found Endpoint
	err = s.run(ctx, func(ctx context.Context, _ time.Duration) (bool, error) {
		leaf, err := verifyEndpoint(ctx, hostport, tr, opts.tune.dialTimeout)
		if err != nil {
			s.reject(ctx, Rejection{Addr: hostport, Err: err})
			return false, nil
		}
		found = Endpoint{Address: hostport, Source: "static", CAPin: tr.pin, Subject: leaf.Subject.String()}
		return true, nil
	})
	if err != nil {
		return Endpoint{}, fmt.Errorf("waiting for the control plane at %s: %w", hostport, err)
	}
	opts.Logger.Info("control plane endpoint verified", "address", hostport, "after", s.elapsed().Round(time.Millisecond))
	return found, nil
}

// Condition is something WaitFor waits to see in the announcements of the cluster.
type Condition struct {
	What string            // for progress lines: "node cp1 to announce phase joined"
	Met  func([]Peer) bool // called with this cluster's peers (same name and CA id) each round
}

// NodeInPhase is met when the named node announces one of phases. List every phase that counts
// (e.g. "joined" and the ones after it), because the node may have moved on by the time one
// looks.
func NodeInPhase(node string, phases ...string) Condition {
	return Condition{
		What: fmt.Sprintf("node %s to announce phase %s", node, strings.Join(phases, " or ")),
		Met: func(ps []Peer) bool {
			return slices.ContainsFunc(ps, func(p Peer) bool { return p.Node == node && slices.Contains(phases, p.Phase) })
		},
	}
}

// APIAnnounced is met when a control plane announces api=. The address is not verified here:
// workers pass it on to Find, which does.
func APIAnnounced() Condition {
	return Condition{
		What: "a control plane to announce its API address",
		Met: func(ps []Peer) bool {
			return slices.ContainsFunc(ps, func(p Peer) bool { return p.API != "" && p.Role == cluster.RoleControlPlane })
		},
	}
}

// WaitFor queries with back-off until cond is met by the announcements of opts.Cluster with the
// cluster's CA id, and returns the peers of the round that met it. Announcements are not
// authenticated: a forged one can at most make the caller go ahead early and fail at the next,
// verified step (Find, kubeadm join).
func WaitFor(ctx context.Context, opts Options, cond Condition) ([]Peer, error) {
	opts = opts.normalized()
	if opts.Cluster == "" || opts.ID == "" {
		return nil, errors.New("waiting for other nodes needs the cluster name and the cluster CA (for its id)")
	}
	ctx, cancel := opts.withDeadline(ctx)
	defer cancel()
	s := newSearch(opts, cond.What)
	var met []Peer
	err := s.run(ctx, func(ctx context.Context, window time.Duration) (bool, error) {
		mine, err := s.queryMine(ctx, window)
		if err != nil {
			return false, err
		}
		if cond.Met(mine) {
			met = mine
			return true, nil
		}
		return false, nil
	})
	if err != nil {
		return nil, fmt.Errorf("waiting for %s in cluster %q: %w", cond.What, opts.Cluster, err)
	}
	return met, nil
}

// search is the loop shared by Find, FindStatic and WaitFor: rounds with growing windows and
// jittered exponential back-off between them, a deadline, and a record of what was seen so that
// the final error (and the rate-limited log) can say it.
type search struct {
	opts    Options
	waiting string
	static  bool // a fixed endpoint: there are no peers to report
	start   time.Time
	rounds  int

	peers    []Peer // this cluster's nodes in the last round that saw any
	foreign  []Peer
	rejected []Rejection
	lastErr  error // last query error, if the last round failed

	lastLog time.Time
	logged  map[string]bool // warnings already logged once
}

func newSearch(opts Options, waiting string) *search {
	now := time.Now()
	return &search{opts: opts, waiting: waiting, start: now, lastLog: now, logged: map[string]bool{}}
}

func (s *search) elapsed() time.Duration { return time.Since(s.start) }

// run calls step once per round until it reports done, the context ends, or maxRounds. A step
// error (a socket that cannot be opened while the network is still coming up) is reported and
// retried like "nothing found yet".
func (s *search) run(ctx context.Context, step func(ctx context.Context, window time.Duration) (bool, error)) error {
	t := s.opts.tune
	s.opts.Logger.Info("looking for " + s.waiting)
	if !s.static && t.firstDelay > 0 {
		// RFC 6762 §5.2: delay the first query by 20-120 ms, so that nodes powered on together
		// (a rack, a batch of VMs) do not query, and get answered, in one burst.
		d := t.firstDelay + time.Duration(rand.Int64N(int64(5*t.firstDelay)+1))
		select {
		case <-ctx.Done():
		case <-time.After(d):
		}
	}
	for s.rounds = 1; s.rounds <= maxRounds; s.rounds++ {
		window := min(t.firstWindow*time.Duration(s.rounds), t.maxWindow)
		done, err := step(ctx, window)
		if done {
			s.progress() // the round that succeeded may still have refused a forged endpoint
			return nil
		}
		if ctx.Err() == nil {
			s.lastErr = err // an error caused by the deadline itself says nothing
		}
		if err != nil && ctx.Err() == nil {
			s.warnOnce("query:"+err.Error(), "mDNS query failed; retrying", "err", err)
		}
		s.report()
		if ctx.Err() != nil {
			break
		}
		gap := min(t.firstGap<<min(s.rounds-1, 20), t.maxGap)
		gap = time.Duration(float64(gap) * (0.75 + rand.Float64()/2)) // spread the nodes' queries apart
		timer := time.NewTimer(gap)
		select {
		case <-ctx.Done():
			timer.Stop()
		case <-timer.C:
		}
		if ctx.Err() != nil {
			break
		}
	}
	nf := &NotFoundError{static: s.static, Waiting: s.waiting, Waited: s.elapsed(), Rounds: min(s.rounds, maxRounds), Peers: s.peers,
		Foreign: s.foreign, Rejected: s.rejected, LastErr: s.lastErr, Err: ctx.Err()}
	if nf.Err == nil {
		nf.Err = fmt.Errorf("stopped after %d rounds", maxRounds)
	}
	return nf
}

// queryMine runs one round and sorts the answers: this cluster's nodes are returned, other CAs
// under the same name are remembered and reported.
func (s *search) queryMine(ctx context.Context, window time.Duration) ([]Peer, error) {
	peers, err := s.opts.queryRound(ctx, window)
	if err != nil {
		return nil, err
	}
	return s.sortAnswers(peers), nil
}

// sortAnswers keeps this cluster's peers and remembers the others. A foreign node heard again
// replaces what was remembered of it, so the report shows its current phase, not the first one.
func (s *search) sortAnswers(peers []Peer) []Peer {
	var mine []Peer
	for _, p := range peers {
		if p.ID == s.opts.ID {
			mine = append(mine, p)
			continue
		}
		if i := slices.IndexFunc(s.foreign, func(f Peer) bool { return f.Instance == p.Instance }); i >= 0 {
			s.foreign[i] = p
		} else if len(s.foreign) < maxRemembered {
			s.foreign = append(s.foreign, p)
		}
		s.warnOnce("foreign:"+p.Instance, "ignoring a node that announces this cluster's name with a different CA",
			"peer", p.String(), "its_id", p.ID, "our_id", s.opts.ID)
	}
	if len(mine) > 0 {
		s.peers = mine
	}
	return mine
}

// reject remembers a failed verification (the latest per address) and logs each distinct one. A
// handshake cut short by the search's own deadline says nothing about the endpoint and would
// hide the real reason, so it is not recorded. Nor does a later timeout or refused connection
// replace a foreign certificate seen at the same address: the endpoint has shown it is not this
// cluster's, and that is what the operator needs to read, not that it was slow the next time.
func (s *search) reject(ctx context.Context, r Rejection) {
	if ctx.Err() != nil {
		return
	}
	var untrusted *UntrustedError
	isUntrusted := errors.As(r.Err, &untrusted)
	i := slices.IndexFunc(s.rejected, func(o Rejection) bool { return o.Addr == r.Addr })
	switch {
	case i >= 0:
		var before *UntrustedError
		if isUntrusted || !errors.As(s.rejected[i].Err, &before) {
			s.rejected[i] = r
		}
	case len(s.rejected) < maxRemembered:
		s.rejected = append(s.rejected, r)
	}
	if isUntrusted {
		s.warnOnce("reject:"+r.Addr+":"+untrusted.Subject, "refused an API endpoint: its certificate is not signed by this cluster's CA",
			"address", r.Addr, "announced_by", r.Peer.String(), "err", r.Err)
	}
}

func (s *search) warnOnce(key, msg string, args ...any) {
	if s.logged[key] {
		return
	}
	s.logged[key] = true
	s.opts.Logger.Warn(msg, args...)
}

func (s *search) progress() {
	if s.opts.Progress != nil {
		s.opts.Progress(Progress{Round: s.rounds, Elapsed: s.elapsed(), Waiting: s.waiting, Peers: s.peers, Foreign: s.foreign, Rejected: s.rejected})
	}
}

// report calls the progress callback and logs a "still waiting" line at most once per
// progressEvery, so a node that waits an hour writes a few hundred lines, not thousands.
func (s *search) report() {
	s.progress()
	if time.Since(s.lastLog) < s.opts.tune.progressEvery {
		return
	}
	s.lastLog = time.Now()
	args := []any{"elapsed", s.elapsed().Round(time.Second), "queries", s.rounds, "seen", len(s.peers)}
	if len(s.peers) > 0 {
		args = append(args, "nodes", peerList(s.peers))
	}
	if len(s.rejected) > 0 {
		args = append(args, "last_rejected", s.rejected[len(s.rejected)-1].String())
	}
	if s.lastErr != nil {
		args = append(args, "err", s.lastErr)
	}
	s.opts.Logger.Info("still waiting for "+s.waiting, args...)
}
