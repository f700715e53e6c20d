// Package discovery lets ksboot nodes find their control plane with no central machine.
//
// It owns four things:
//
//   - Announcing: every node answers mDNS queries for _ksboot._tcp (Announce) with its own
//     addresses, given explicitly, and a TXT record (txt.go: v=1, cluster=, id=, node=, role=,
//     phase=, api=, err=, age=). The announcement follows the node's bootstrap phase
//     (Announcer.SetPhase, SetAPI, SetError).
//   - Finding: Find queries repeatedly with back-off until a deadline, keeps only announcements
//     whose cluster name and CA id match the node's seed, and returns an API endpoint only after a
//     TLS handshake has shown that its certificate chains to the cluster CA. FindStatic does the
//     same for a fixed address. WaitFor orders the nodes (a joining control plane waits for the
//     previous one to announce "joined").
//   - Watching: Browse, Snapshot and Watch turn announcements into a table of nodes (Model,
//     Table) that renders as text or JSON for `ksboot discover` and `ksboot watch`.
//   - The TXT schema, in one file with its encoder and decoder.
//
// mDNS only finds; it proves nothing. Trust comes from the CA in the seed: a forged announcement
// can at worst delay a node or make its join fail loudly, never point it at a foreign API
// server. Two clusters with one name never mix, because the CA id travels in every announcement
// and the TLS check uses the whole CA.
//
// The package uses github.com/hashicorp/mdns (v1.0.7) and works around its habits, each
// explained where it matters:
//
//   - the client hands answers over without blocking and drops what the reader is not ready
//     for, so the entries channel is buffered and drained by a goroutine;
//   - it keeps writing to an entry after handing it over, so entries are read only after the
//     query has returned (reading them earlier is a data race);
//   - it sends one query per call and QueryContext runs its whole window even when cancelled,
//     so rounds are short, repeated with back-off, and bounded by the deadline;
//   - it merges answers by instance name and files A records under the SRV host name, so both
//     are unique per announcer (node name, CA id and a random suffix);
//   - it keeps only the last A record of an instance, so a peer has one address; api= carries
//     the one that matters;
//   - it joins the multicast group on the routing table's interface even when
//     QueryParam.Interface is set (that only steers outgoing queries), so a node needs a default
//     or multicast route to query; the error says so;
//   - the server resolves the host name when given no addresses (127.0.1.1 on Debian), so
//     addresses are always given; it starts when either IPv4 or IPv6 can listen and drops the
//     other's error, so Announce checks IPv4 itself; it always opens an IPv6 listener too;
//   - the server answers every query by unicast to the querier's address and port, whatever
//     the QU bit says, so passive listeners never see answers and watchers must query;
//   - both log through the std logger unless given one, so their lines go to slog at debug.
//
// Nothing here runs kubeadm or decides what a phase means; bootstrap does.
package discovery
