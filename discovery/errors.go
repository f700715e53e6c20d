package discovery

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// ConflictError says that one cluster name is announced under several CA ids: two clusters
// built from different secrets directories but given the same name. A reader that does not know
// its own CA cannot tell which one is meant.
type ConflictError struct {
	Cluster string
	ByID    map[string][]Peer // CA id → the nodes announcing it
}

func (e *ConflictError) Error() string {
	ids := slices.Sorted(maps.Keys(e.ByID))
	parts := make([]string, len(ids))
	for i, id := range ids {
		parts[i] = "id " + id + ": " + peerList(e.ByID[id])
	}
	return fmt.Sprintf("cluster name %q is announced by %d clusters with different CAs (%s); "+
		"use the node's seed (its CA decides which cluster is meant) or give the clusters different names",
		e.Cluster, len(ids), strings.Join(parts, "; "))
}

// Conflicts reports cluster names announced under more than one CA id, or nil.
func Conflicts(peers []Peer) error {
	byName := map[string]map[string][]Peer{}
	for _, p := range peers {
		if byName[p.Cluster] == nil {
			byName[p.Cluster] = map[string][]Peer{}
		}
		byName[p.Cluster][p.ID] = append(byName[p.Cluster][p.ID], p)
	}
	for _, name := range slices.Sorted(maps.Keys(byName)) {
		if len(byName[name]) > 1 {
			return &ConflictError{Cluster: name, ByID: byName[name]}
		}
	}
	return nil
}

// UntrustedError says that an endpoint's TLS certificate does not chain to the cluster CA. The
// announcement that pointed there is forged, stale (a reinstalled machine), or from another
// cluster; its endpoint is never used.
type UntrustedError struct {
	Addr    string
	Subject string // of the server certificate
	Issuer  string
	Pin     string // of the CA we trust
	Err     error
}

func (e *UntrustedError) Error() string {
	return fmt.Sprintf("its TLS certificate (%s, issued by %s) is not signed by this cluster's CA (%s): "+
		"it is another cluster's API server or a forged announcement, so it is not used: %v",
		e.Subject, e.Issuer, e.Pin, e.Err)
}

func (e *UntrustedError) Unwrap() error { return e.Err }

// Rejection is an announced endpoint that failed verification.
type Rejection struct {
	Peer Peer // who announced it; zero for a static endpoint
	Addr string
	Err  error
}

func (r Rejection) String() string {
	if r.Peer.Node == "" {
		return r.Err.Error()
	}
	return fmt.Sprintf("%s announced by %s: %v", r.Addr, r.Peer, r.Err)
}

// Progress describes one round of a search, for callers that show it (the console, the watch
// view). Slices are the search's own view so far; do not modify them.
type Progress struct {
	Round    int
	Elapsed  time.Duration
	Waiting  string      // what the search waits for, in words
	Peers    []Peer      // nodes of this cluster that answered this round
	Foreign  []Peer      // nodes announcing this cluster name with another CA, seen so far
	Rejected []Rejection // endpoints that failed verification, seen so far
}

// NotFoundError is the end of a search that did not succeed: what it waited for, for how long,
// and everything it saw on the way, so that the user can tell "nothing on the network" from
// "the wrong cluster answered" from "a forged endpoint was refused".
type NotFoundError struct {
	Waiting  string
	Waited   time.Duration
	Rounds   int
	Peers    []Peer // nodes of this cluster in the last round that saw any
	Foreign  []Peer
	Rejected []Rejection
	LastErr  error // the last round's query error, if it failed (no multicast route, ...)
	Err      error // the context's error

	static bool // a fixed endpoint: no peers to speak of
}

func (e *NotFoundError) Error() string {
	var b strings.Builder
	unit := "queries"
	if e.static {
		unit = "attempts"
	}
	fmt.Fprintf(&b, "gave up after %s (%d %s) waiting for %s", e.Waited.Round(100*time.Millisecond), e.Rounds, unit, e.Waiting)
	switch {
	case e.static:
	case len(e.Peers) > 0:
		fmt.Fprintf(&b, "; nodes of this cluster seen: %s", peerList(e.Peers))
	default:
		b.WriteString("; no node of this cluster answered")
	}
	if len(e.Rejected) > 0 {
		rs := make([]string, len(e.Rejected))
		for i, r := range e.Rejected {
			rs[i] = r.String()
		}
		fmt.Fprintf(&b, "; endpoints not used: %s", strings.Join(rs, "; "))
	}
	if len(e.Foreign) > 0 {
		byID := map[string][]Peer{}
		for _, p := range e.Foreign {
			byID[p.ID] = append(byID[p.ID], p)
		}
		var fs []string
		for _, id := range slices.Sorted(maps.Keys(byID)) {
			fs = append(fs, "id "+id+": "+peerList(byID[id]))
		}
		fmt.Fprintf(&b, "; other clusters with the same name but a different CA answered (%s): "+
			"this node's seed comes from a different secrets directory than those nodes'", strings.Join(fs, "; "))
	}
	if e.LastErr != nil {
		fmt.Fprintf(&b, "; the last query failed: %v", e.LastErr)
	} else if !e.static && len(e.Peers) == 0 && len(e.Foreign) == 0 && len(e.Rejected) == 0 {
		b.WriteString("; check that the control plane is powered on and in the same network segment (mDNS does not cross routers), or use discovery mode static")
	}
	return b.String()
}

// Unwrap exposes the context's error and every rejection, so that errors.As finds an
// UntrustedError behind a search that ended without an endpoint.
func (e *NotFoundError) Unwrap() []error {
	errs := []error{e.Err}
	if e.LastErr != nil {
		errs = append(errs, e.LastErr)
	}
	for _, r := range e.Rejected {
		errs = append(errs, r.Err)
	}
	return errs
}

func peerList(ps []Peer) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, ", ")
}
