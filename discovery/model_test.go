package discovery

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"
)

const (
	idA = "aaaaaaaaaaaaaaaa"
	idB = "bbbbbbbbbbbbbbbb"
)

func peer(cluster, id, node, role, phase, addr string) Peer {
	return Peer{Record: Record{Cluster: cluster, ID: id, Node: node, Role: role, Phase: phase},
		Instance: node + "-" + id, Addr: netip.MustParseAddr(addr), Seen: time.Unix(1000, 0)}
}

func TestConflicts(t *testing.T) {
	for _, tc := range []struct {
		name  string
		peers []Peer
		want  []string // substrings; nil means no conflict
	}{
		{"empty", nil, nil},
		{"one cluster, several nodes", []Peer{
			peer("sample", idA, "cp1", "control-plane", "joined", "10.0.0.2"),
			peer("sample", idA, "w1", "worker", "discover", "10.0.0.3"),
		}, nil},
		{"two names", []Peer{
			peer("sample", idA, "cp1", "control-plane", "joined", "10.0.0.2"),
			peer("other", idB, "cp1", "control-plane", "joined", "10.0.0.9"),
		}, nil},
		{"one name, two CAs", []Peer{
			peer("sample", idA, "cp1", "control-plane", "joined", "10.0.0.2"),
			peer("sample", idB, "cp1", "control-plane", "kubeadm", "10.0.0.9"),
			peer("sample", idB, "w9", "worker", "discover", "10.0.0.10"),
		}, []string{`cluster name "sample" is announced by 2 clusters`, "id " + idA + ": node cp1 (10.0.0.2",
			"id " + idB + ": node cp1 (10.0.0.9, control-plane, phase kubeadm), node w9 (10.0.0.10"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Conflicts(tc.peers)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("unexpected conflict: %v", err)
				}
				return
			}
			var ce *ConflictError
			if !errors.As(err, &ce) {
				t.Fatalf("want a ConflictError, got %v", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("message lacks %q:\n%v", w, err)
				}
			}
		})
	}
}

func TestCandidates(t *testing.T) {
	w := peer("sample", idA, "a-worker", "worker", "done", "10.0.0.5")
	w.API = "10.0.0.5:6443" // a worker announcing api= is odd but must come after control planes
	cp2 := peer("sample", idA, "cp2", "control-plane", "joined", "10.0.0.3")
	cp2.API = "10.0.0.3:6443"
	cp1 := peer("sample", idA, "cp1", "control-plane", "done", "10.0.0.2")
	cp1.API = "10.0.0.2:6443"
	vip := peer("sample", idA, "cp3", "control-plane", "done", "10.0.0.4")
	vip.API = cp1.API // same VIP announced twice: one handshake
	none := peer("sample", idA, "cp0", "control-plane", "kubeadm", "10.0.0.1")
	var got []string
	for _, p := range candidates([]Peer{w, cp2, none, cp1, vip}) {
		got = append(got, p.Node)
	}
	if strings.Join(got, ",") != "cp1,cp2,a-worker" {
		t.Errorf("candidates = %v", got)
	}
}

func TestNotFoundErrorMessage(t *testing.T) {
	w := peer("sample", idA, "w1", "worker", "discover", "10.0.0.3")
	foreign := peer("sample", idB, "cp1", "control-plane", "done", "10.0.0.9")
	forged := peer("sample", idA, "cp1", "control-plane", "done", "10.0.0.66")
	e := &NotFoundError{Waiting: "a control plane", Waited: 90 * time.Second, Rounds: 30, Peers: []Peer{w}, Foreign: []Peer{foreign},
		Rejected: []Rejection{{Peer: forged, Addr: "10.0.0.66:6443", Err: &UntrustedError{Addr: "10.0.0.66:6443", Subject: "CN=x", Issuer: "CN=evil", Pin: "sha256:ab", Err: errors.New("x509: unknown authority")}}}}
	msg := e.Error()
	for _, want := range []string{"gave up after 1m30s (30 queries) waiting for a control plane",
		"nodes of this cluster seen: node w1 (10.0.0.3, worker, phase discover)",
		"endpoints not used: 10.0.0.66:6443 announced by node cp1 (10.0.0.66", "issued by CN=evil",
		"id " + idB + ": node cp1 (10.0.0.9", "different secrets directory"} {
		if !strings.Contains(msg, want) {
			t.Errorf("message lacks %q:\n%s", want, msg)
		}
	}
	var u *UntrustedError
	if !errors.As(e, &u) || u.Issuer != "CN=evil" {
		t.Errorf("errors.As does not reach the rejection")
	}
	empty := (&NotFoundError{Waiting: "x", Err: errors.New("deadline")}).Error()
	if !strings.Contains(empty, "no node of this cluster answered") || !strings.Contains(empty, "mDNS does not cross routers") {
		t.Errorf("empty search message: %s", empty)
	}
}

func TestModel(t *testing.T) {
	m := NewModel(Options{Cluster: "sample", ID: idA})
	t0 := time.Unix(1000, 0)
	cp := peer("sample", idA, "cp1", "control-plane", "kubeadm", "10.0.0.2")
	cp.InPhase, cp.Seen = 30*time.Second, t0
	w := peer("sample", idA, "w1", "worker", "discover", "10.0.0.3")
	w.Seen = t0
	other := peer("sample", idB, "cp1", "control-plane", "done", "10.0.0.9")
	other.Seen = t0
	elsewhere := peer("prod", idB, "x", "worker", "done", "10.0.0.50")
	if !m.Update([]Peer{w, cp, other, elsewhere}) {
		t.Fatal("first update reports no change")
	}
	tab := m.Table(t0.Add(10 * time.Second))
	if len(tab.Nodes) != 3 {
		t.Fatalf("rows %+v", tab.Nodes)
	}
	if r := tab.Nodes[0]; r.Node != "cp1" || r.ID != idA || r.InPhaseSeconds != 40 || r.Foreign {
		t.Errorf("row 0 %+v", r)
	}
	if r := tab.Nodes[1]; r.Node != "w1" || r.Phase != "discover" || r.Foreign {
		t.Errorf("row 1 %+v", r)
	}
	if r := tab.Nodes[2]; r.Node != "cp1" || r.ID != idB || !r.Foreign {
		t.Errorf("row 2 (other CA) %+v", r)
	}

	// The same state again is no change; a phase change restarts the time in phase.
	if m.Update([]Peer{w, cp}) {
		t.Error("identical update reported a change")
	}
	cp2 := cp
	cp2.Phase, cp2.InPhase, cp2.Seen, cp2.API, cp2.Error = "joined", 0, t0.Add(20*time.Second), "10.0.0.2:6443", "addons: retrying"
	if !m.Update([]Peer{cp2}) {
		t.Error("phase change not reported")
	}
	tab = m.Table(t0.Add(25 * time.Second))
	r := tab.Nodes[0]
	if r.Phase != "joined" || r.InPhaseSeconds != 5 || r.API != "10.0.0.2:6443" || r.LastError != "addons: retrying" {
		t.Errorf("after phase change %+v", r)
	}
	// w1 was last seen at t0; 25 s later it is stale.
	if !tab.Nodes[1].Stale || tab.Nodes[0].Stale {
		t.Errorf("stale flags: %+v", tab.Nodes)
	}

	var text bytes.Buffer
	if err := tab.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`cluster "sample" (CA id ` + idA + `): 3 nodes`, "CLUSTER", idB + " (other CA)", "joined", "10.0.0.2:6443",
		"addons: retrying", "discover (not seen for 25s)", "IN PHASE"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("text lacks %q:\n%s", want, text.String())
		}
	}
	t.Logf("\n%s", text.String())

	var js bytes.Buffer
	if err := tab.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	var back Table
	if err := json.Unmarshal(js.Bytes(), &back); err != nil {
		t.Fatalf("JSON does not parse: %v\n%s", err, js.String())
	}
	if len(back.Nodes) != 3 || back.Nodes[0].Phase != "joined" || back.Nodes[0].InPhaseSeconds != 5 || back.ID != idA {
		t.Errorf("JSON round trip %+v", back)
	}
	for _, key := range []string{`"inPhaseSeconds": 5`, `"lastError": "addons: retrying"`, `"foreign": true`, `"stale": true`} {
		if !strings.Contains(js.String(), key) {
			t.Errorf("JSON lacks %s:\n%s", key, js.String())
		}
	}
}

func TestModelConflictWithoutCA(t *testing.T) {
	m := NewModel(Options{Cluster: "sample"})
	m.Update([]Peer{peer("sample", idA, "cp1", "control-plane", "done", "10.0.0.2"), peer("sample", idB, "cp1", "control-plane", "done", "10.0.0.9")})
	tab := m.Table(time.Unix(1000, 0))
	if !strings.Contains(tab.Conflict, "2 clusters with different CAs") {
		t.Errorf("conflict %q", tab.Conflict)
	}
	var text bytes.Buffer
	_ = tab.WriteText(&text)
	if !strings.Contains(text.String(), "WARNING: cluster name") {
		t.Errorf("text:\n%s", text.String())
	}
	empty := NewModel(Options{}).Table(time.Unix(0, 0))
	var js bytes.Buffer
	_ = empty.WriteJSON(&js)
	if !strings.Contains(js.String(), `"nodes": []`) {
		t.Errorf("empty table must list no nodes as [], not null:\n%s", js.String())
	}
}

func TestHumanDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{0: "0s", 45 * time.Second: "45s", 125 * time.Second: "2m5s", 3*time.Hour + 4*time.Minute: "3h4m"} {
		if got := humanDuration(d); got != want {
			t.Errorf("humanDuration(%v) = %q, want %q", d, got, want)
		}
	}
}

func TestInstanceName(t *testing.T) {
	a, b := instanceName("Node_1.example.com", idA), instanceName("Node_1.example.com", idA)
	if a == b {
		t.Error("two announcers of one node got the same instance name")
	}
	if !strings.HasPrefix(a, "node-1-example-com-"+idA+"-") {
		t.Errorf("instance %q", a)
	}
	long := instanceName(strings.Repeat("x", 100), idA)
	if len(long) > 63 {
		t.Errorf("instance name %d bytes: over the DNS label limit", len(long))
	}
}

func TestDefaultRouteIface(t *testing.T) {
	path := t.TempDir() + "/route"
	data := "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n" +
		"ens3\t0002000A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n" +
		"ens4\t00000000\t0102000A\t0003\t0\t0\t0\t00000000\t0\t0\t0\n"
	if err := writeFile(path, data); err != nil {
		t.Fatal(err)
	}
	if got, err := defaultRouteIface(path); err != nil || got != "ens4" {
		t.Errorf("defaultRouteIface = %q, %v", got, err)
	}
}

func writeFile(path, data string) error { return os.WriteFile(path, []byte(data), 0o600) }

// A foreign certificate seen at an address stays the reason it is not used, even if the same
// address later times out (a forger under load, or one that went away).
func TestRejectKeepsForeignCertificate(t *testing.T) {
	s := newSearch(Options{Logger: slog.New(slog.DiscardHandler)}, "a control plane")
	ctx := context.Background()
	forged := peer("sample", idA, "cp0", "control-plane", "done", "10.0.0.66")
	foreign := &UntrustedError{Addr: "10.0.0.66:6443", Subject: "CN=x", Issuer: "CN=evil", Pin: "sha256:ab", Err: errors.New("x509: unknown authority")}
	s.reject(ctx, Rejection{Peer: forged, Addr: "10.0.0.66:6443", Err: errors.New("dial tcp 10.0.0.66:6443: i/o timeout")})
	s.reject(ctx, Rejection{Peer: forged, Addr: "10.0.0.66:6443", Err: foreign})
	s.reject(ctx, Rejection{Peer: forged, Addr: "10.0.0.66:6443", Err: errors.New("dial tcp 10.0.0.66:6443: i/o timeout")})
	s.reject(ctx, Rejection{Addr: "10.0.0.7:6443", Err: errors.New("connection refused")})
	s.reject(ctx, Rejection{Addr: "10.0.0.7:6443", Err: errors.New("i/o timeout")})
	if len(s.rejected) != 2 {
		t.Fatalf("rejections %v", s.rejected)
	}
	var u *UntrustedError
	if !errors.As(s.rejected[0].Err, &u) || u.Issuer != "CN=evil" {
		t.Errorf("the foreign certificate was replaced by %v", s.rejected[0].Err)
	}
	if got := s.rejected[1].Err.Error(); got != "i/o timeout" {
		t.Errorf("a plain failure is not the latest one: %q", got)
	}
}

// A foreign node heard again is reported as it is now (its phase moves on), not as first heard,
// and this cluster's own nodes are what the round returns.
func TestForeignPeersRefresh(t *testing.T) {
	s := newSearch(Options{ID: idA, Logger: slog.New(slog.DiscardHandler)}, "a control plane")
	mine := peer("sample", idA, "w1", "worker", "discover", "10.0.0.21")
	if got := s.sortAnswers([]Peer{mine, peer("sample", idB, "cp1", "control-plane", "install", "10.0.0.66")}); len(got) != 1 || got[0].Node != "w1" {
		t.Fatalf("this cluster's peers = %v", got)
	}
	s.sortAnswers([]Peer{peer("sample", idB, "cp1", "control-plane", "kubeadm", "10.0.0.66"), peer("sample", idB, "w9", "worker", "install", "10.0.0.99")})
	if len(s.foreign) != 2 {
		t.Fatalf("foreign peers %v, want cp1 once and w9", s.foreign)
	}
	if s.foreign[0].Phase != "kubeadm" || s.foreign[1].Node != "w9" {
		t.Errorf("foreign peers %v: cp1 should be in its latest phase (kubeadm)", s.foreign)
	}
}
