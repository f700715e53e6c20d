package discovery

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestConsoleTravelsToWatch(t *testing.T) {
	rec := Record{Cluster: "demo", ID: "0123456789abcdef", Node: "cp1", Role: "control-plane", Phase: "done",
		API: "10.0.0.1:6443", Console: "http://10.0.0.1:30880"}
	txt, err := rec.EncodeTXT()
	if err != nil {
		t.Fatal(err)
	}
	back, err := DecodeTXT(txt)
	if err != nil {
		t.Fatal(err)
	}
	if back.Console != rec.Console {
		t.Fatalf("console %q after a round trip", back.Console)
	}
	m := NewModel(Options{Cluster: "demo", ID: "0123456789abcdef"})
	m.Update([]Peer{{Record: back, Seen: time.Now()}})
	var out bytes.Buffer
	if err := m.Table(time.Now()).WriteText(&out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "KubeSphere console: http://10.0.0.1:30880 (announced by cp1)") {
		t.Errorf("watch table:\n%s", out.String())
	}
	rec.Console = "http://" + strings.Repeat("x", 300)
	if _, err := rec.EncodeTXT(); err == nil {
		t.Error("an over-long console URL was accepted")
	}
}
