package bootstrap

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/ksboot/ksboot/bootstrap/host"
	"github.com/ksboot/ksboot/bootstrap/state"
	"github.com/ksboot/ksboot/cluster"
	"github.com/ksboot/ksboot/discovery"
)

// A node waiting for its control plane says, once per new problem, what is in the way, on the
// console and in status.json (which its announcement carries to ksboot watch).
func TestDiscoverProgressReportsForeignAndRejected(t *testing.T) {
	c := cluster.Sample(cluster.SampleOptions{})
	s, err := cluster.NewSecrets()
	if err != nil {
		t.Fatal(err)
	}
	nc, err := cluster.GenericWorkerConfig(c, s)
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	var console bytes.Buffer
	n := &Node{Config: nc, Name: "worker-1", Root: host.Root(root), Console: &console, Logger: slog.New(slog.DiscardHandler), Status: &state.Status{Node: "worker-1"}}
	progress := discoverProgress(n)

	progress(discovery.Progress{Round: 1}) // nothing seen: nothing said
	if console.Len() != 0 {
		t.Fatalf("console after a quiet round: %q", console.String())
	}
	foreign := discovery.Peer{Instance: "cp1", Record: discovery.Record{Cluster: c.Metadata.Name, ID: "0123456789abcdef", Node: "cp1", Phase: "done"}}
	progress(discovery.Progress{Round: 2, Foreign: []discovery.Peer{foreign}})
	progress(discovery.Progress{Round: 3, Foreign: []discovery.Peer{foreign}}) // same problem: said once
	want := `ignoring 1 node(s) announcing cluster "sample" with a different CA (CA id 0123456789abcdef, this seed's is ` + cluster.ClusterID(nc.Secrets.CACertHash) + ")"
	if got := console.String(); strings.Count(got, "ksboot: waiting for the control plane:") != 1 || !strings.Contains(got, want) {
		t.Errorf("console:\n%s\nwant one line containing %q", got, want)
	}
	st, err := state.Read(root)
	if err != nil || st == nil || !strings.Contains(st.Error, want) {
		t.Fatalf("status.json error %v (%v), want %q", st, err, want)
	}

	// An endpoint that does not answer yet is what the wait is for: not a problem to report.
	before := console.String()
	progress(discovery.Progress{Round: 4, Foreign: []discovery.Peer{foreign},
		Rejected: []discovery.Rejection{{Addr: "10.0.0.9:6443", Err: errors.New("dial tcp 10.0.0.9:6443: connect: connection refused")}}})
	if console.String() != before {
		t.Errorf("an API that does not answer yet was reported: %q", strings.TrimPrefix(console.String(), before))
	}
	progress(discovery.Progress{Round: 5, Foreign: []discovery.Peer{foreign},
		Rejected: []discovery.Rejection{{Addr: "10.0.0.9:6443", Err: &discovery.UntrustedError{Subject: "CN=kube-apiserver", Issuer: "CN=other", Err: errors.New("x509: certificate signed by unknown authority")}}}})
	if st, _ := state.Read(root); !strings.Contains(st.Error, "refused 10.0.0.9:6443") || !strings.Contains(st.Error, "not signed by this cluster's CA") {
		t.Errorf("status.json error %q, want the refused endpoint", st.Error)
	}
}
