package state

import (
	"testing"
	"time"
)

// TestRecordFailure counts failures of one phase in a row and starts again for another, and
// the record survives the JSON round trip a restart makes.
func TestRecordFailure(t *testing.T) {
	root := t.TempDir()
	t0 := time.Date(2026, 12, 5, 12, 0, 0, 0, time.FixedZone("CET", 3600))
	s := &Status{}
	for i, phase := range []string{"install", "install", "install", "kubeadm", "kubeadm"} {
		s.RecordFailure(phase, t0.Add(time.Duration(i)*time.Minute))
		if err := Write(root, s); err != nil {
			t.Fatal(err)
		}
		var err error
		if s, err = Read(root); err != nil {
			t.Fatal(err)
		}
	}
	want := Retry{Phase: "kubeadm", Failures: 2, Failed: t0.Add(4 * time.Minute).UTC()}
	if s.Retry == nil || *s.Retry != want {
		t.Errorf("retry %+v, want %+v", s.Retry, want)
	}
}
