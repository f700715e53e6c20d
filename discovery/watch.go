package discovery

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// Row is one node in the watch view.
type Row struct {
	Cluster        string    `json:"cluster"`
	ID             string    `json:"id"`
	Node           string    `json:"node"`
	Role           string    `json:"role"`
	Address        string    `json:"address"`
	Phase          string    `json:"phase"`
	InPhaseSeconds int64     `json:"inPhaseSeconds"`
	API            string    `json:"api,omitempty"`
	LastError      string    `json:"lastError,omitempty"`
	Console        string    `json:"console,omitempty"`
	LastSeen       time.Time `json:"lastSeen"`
	// Stale marks a node that stopped answering (powered off, rebooting, or its network broke).
	Stale bool `json:"stale,omitempty"`
	// Foreign marks a node of another CA under the watched cluster name.
	Foreign bool `json:"foreign,omitempty"`
}

// Table is the watch view at one moment; `ksboot watch --once -o json` prints it.
type Table struct {
	Cluster  string    `json:"cluster,omitempty"`
	ID       string    `json:"id,omitempty"`
	Time     time.Time `json:"time"`
	Nodes    []Row     `json:"nodes"`
	Conflict string    `json:"conflict,omitempty"` // one name, several CAs (see ConflictError)
	Problem  string    `json:"problem,omitempty"`  // the last query failed
}

// Model keeps the watch view up to date from query rounds. Rows are keyed by CA id, node and
// address, so a node that restarts (new instance name) keeps its row while two machines that
// claim one name (cloned VMs) show up as two rows.
type Model struct {
	Cluster string
	ID      string
	// StaleAfter is how long a node may go unseen before its row is marked stale.
	StaleAfter time.Duration

	rows     map[string]*modelRow
	conflict string
	problem  string
}

type modelRow struct {
	Row
	since time.Time // phase start, in this process's clock
}

// NewModel starts an empty view of opts.Cluster (all clusters if empty). With a CA (opts.ID or
// CAPEM) nodes of other CAs are marked foreign; without, several CAs under one name are a
// conflict.
func NewModel(opts Options) *Model {
	opts = opts.normalized()
	return &Model{Cluster: opts.Cluster, ID: opts.ID, StaleAfter: 10 * time.Second, rows: map[string]*modelRow{}}
}

// Update merges one round's peers and reports whether anything a user sees changed.
func (m *Model) Update(peers []Peer) bool {
	changed := false
	for _, p := range peers {
		if m.Cluster != "" && p.Cluster != m.Cluster {
			continue
		}
		addr := ""
		if p.Addr.IsValid() {
			addr = p.Addr.String()
		}
		key := p.ID + "\x00" + p.Node + "\x00" + addr
		// The announcer measures its time in phase on its own clock; rebase it on ours.
		since := p.Seen.Add(-p.InPhase)
		r, ok := m.rows[key]
		if !ok {
			r = &modelRow{since: since}
			m.rows[key] = r
			changed = true
		}
		if r.Phase != p.Phase || r.API != p.API || r.LastError != p.Error || r.Console != p.Console || r.Role != p.Role || p.Seen.Sub(r.LastSeen) > m.StaleAfter {
			changed = true
		}
		if r.Phase != p.Phase {
			r.since = since
		}
		r.Row = Row{Cluster: p.Cluster, ID: p.ID, Node: p.Node, Role: p.Role, Address: addr, Phase: p.Phase,
			API: p.API, LastError: p.Error, Console: p.Console, LastSeen: p.Seen, Foreign: m.ID != "" && p.ID != m.ID}
	}
	conflict := ""
	if m.ID == "" {
		if err := Conflicts(peers); err != nil {
			conflict = err.Error()
		}
	}
	if conflict != m.conflict {
		m.conflict, changed = conflict, true
	}
	return changed
}

// Table renders the view at time now, sorted by cluster, the watched CA before others, control
// planes first, then node.
func (m *Model) Table(now time.Time) Table {
	t := Table{Cluster: m.Cluster, ID: m.ID, Time: now, Nodes: []Row{}, Conflict: m.conflict, Problem: m.problem}
	for _, r := range m.rows {
		row := r.Row
		row.InPhaseSeconds = int64(max(now.Sub(r.since), 0) / time.Second)
		row.Stale = now.Sub(r.LastSeen) > m.StaleAfter
		t.Nodes = append(t.Nodes, row)
	}
	slices.SortFunc(t.Nodes, func(a, b Row) int {
		return cmp.Or(cmp.Compare(a.Cluster, b.Cluster), cmp.Compare(foreignRank(a), foreignRank(b)), cmp.Compare(a.ID, b.ID),
			cmp.Compare(roleRank(a.Role), roleRank(b.Role)), cmp.Compare(a.Node, b.Node), cmp.Compare(a.Address, b.Address))
	})
	return t
}

func foreignRank(r Row) int {
	if r.Foreign {
		return 1
	}
	return 0
}

func roleRank(role string) int {
	if role == "control-plane" {
		return 0
	}
	return 1
}

// WriteJSON prints the table as one indented JSON document.
func (t Table) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(t); err != nil {
		return fmt.Errorf("writing the node table: %w", err)
	}
	return nil
}

// WriteText prints the table for people: one line per node, aligned columns. Cluster and CA id
// columns appear only when more than one cluster is in view.
func (t Table) WriteText(w io.Writer) error {
	groups := map[string]bool{}
	for _, r := range t.Nodes {
		groups[r.Cluster+"/"+r.ID] = true
	}
	multi := len(groups) > 1
	var b strings.Builder
	switch {
	case t.Cluster != "" && t.ID != "":
		fmt.Fprintf(&b, "cluster %q (CA id %s): %s\n", t.Cluster, t.ID, countNodes(t.Nodes))
	case t.Cluster != "":
		fmt.Fprintf(&b, "cluster %q: %s\n", t.Cluster, countNodes(t.Nodes))
	default:
		fmt.Fprintf(&b, "all ksboot clusters: %s\n", countNodes(t.Nodes))
	}
	if t.Conflict != "" {
		fmt.Fprintf(&b, "WARNING: %s\n", t.Conflict)
	}
	if t.Problem != "" {
		fmt.Fprintf(&b, "WARNING: %s\n", t.Problem)
	}
	tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	if multi {
		fmt.Fprint(tw, "CLUSTER\tCA ID\t")
	}
	fmt.Fprintln(tw, "NODE\tROLE\tADDRESS\tPHASE\tIN PHASE\tAPI\tLAST ERROR")
	for _, r := range t.Nodes {
		if multi {
			id := r.ID
			if r.Foreign {
				id += " (other CA)"
			}
			fmt.Fprintf(tw, "%s\t%s\t", r.Cluster, id)
		}
		phase := r.Phase
		if r.Stale {
			phase += " (not seen for " + humanDuration(t.Time.Sub(r.LastSeen)) + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Node, r.Role, dash(r.Address), dash(phase),
			humanDuration(time.Duration(r.InPhaseSeconds)*time.Second), dash(r.API), dash(r.LastError))
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("writing the node table: %w", err)
	}
	for _, r := range t.Nodes {
		if r.Console != "" && !r.Foreign {
			fmt.Fprintf(&b, "KubeSphere console: %s (announced by %s)\n", r.Console, r.Node)
		}
	}
	if _, err := io.WriteString(w, b.String()); err != nil {
		return fmt.Errorf("writing the node table: %w", err)
	}
	return nil
}

func countNodes(rows []Row) string {
	if len(rows) == 1 {
		return "1 node"
	}
	return fmt.Sprintf("%d nodes", len(rows))
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// humanDuration prints 45s, 2m5s, 3h4m: precise while short, compact when long.
func humanDuration(d time.Duration) string {
	d = d.Round(time.Second)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d/time.Second))
	case d < time.Hour:
		return fmt.Sprintf("%dm%ds", int(d/time.Minute), int(d%time.Minute/time.Second))
	default:
		return fmt.Sprintf("%dh%dm", int(d/time.Hour), int(d%time.Hour/time.Minute))
	}
}

// Snapshot runs one query round and returns the view (`ksboot watch --once`, `ksboot discover`).
func Snapshot(ctx context.Context, opts Options) (Table, error) {
	opts = opts.normalized()
	m := NewModel(opts)
	peers, err := opts.queryRound(ctx, opts.tune.maxWindow)
	if err != nil {
		return Table{}, err
	}
	m.Update(peers)
	return m.Table(time.Now()), nil
}

// Watch queries every interval (at least one query window) and calls fn with the view after each
// round in which something a user sees changed (a phase, an error, a node appearing or going
// stale), and at least every 10 intervals so that a live view keeps its times moving. It returns
// when ctx ends (nil) or fn fails (its error). A failed query is shown in Table.Problem and
// retried.
func Watch(ctx context.Context, opts Options, every time.Duration, fn func(Table) error) error {
	opts = opts.normalized()
	every = max(every, opts.tune.maxWindow)
	m := NewModel(opts)
	m.StaleAfter = max(m.StaleAfter, 3*every)
	var prev Table
	var last time.Time
	for round := 0; ctx.Err() == nil; round++ {
		start := time.Now()
		peers, err := opts.queryRound(ctx, opts.tune.maxWindow)
		if ctx.Err() != nil {
			return nil
		}
		m.Update(peers)
		m.problem = ""
		if err != nil {
			m.problem = err.Error()
		}
		now := time.Now()
		t := m.Table(now)
		if round == 0 || !sameView(prev, t) || now.Sub(last) >= 10*every {
			prev, last = t, now
			if err := fn(t); err != nil {
				return err
			}
		}
		timer := time.NewTimer(max(every-time.Since(start), 0))
		select {
		case <-ctx.Done():
			timer.Stop()
		case <-timer.C:
		}
	}
	return nil
}

// sameView compares what a user reads, ignoring the clocks that move every round.
func sameView(a, b Table) bool {
	if a.Conflict != b.Conflict || a.Problem != b.Problem || len(a.Nodes) != len(b.Nodes) {
		return false
	}
	for i := range a.Nodes {
		x, y := a.Nodes[i], b.Nodes[i]
		x.InPhaseSeconds, y.InPhaseSeconds, x.LastSeen, y.LastSeen = 0, 0, time.Time{}, time.Time{}
		if x != y {
			return false
		}
	}
	return true
}
