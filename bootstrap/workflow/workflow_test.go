package workflow

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/ksboot/ksboot/bootstrap/host"
	"github.com/ksboot/ksboot/bootstrap/state"
)

type data struct{ ran []string }

func phases(fail string) []Phase[*data] {
	mk := func(name string) Phase[*data] {
		return Phase[*data]{Name: name, Short: "do " + name, Run: func(_ context.Context, d *data) error {
			d.ran = append(d.ran, name)
			if name == fail {
				return WithHint(errors.New("boom"), "fix the thing")
			}
			return nil
		}}
	}
	ps := []Phase[*data]{mk("a"), mk("b"), mk("c")}
	ps[2].RunIf = func(*data) bool { return true }
	return ps
}

func TestFailureThenResume(t *testing.T) {
	root := host.Root(t.TempDir())
	st := &state.Status{Node: "n1"}
	d := &data{}
	var console bytes.Buffer
	err := Run(context.Background(), phases("b"), d, Options{Root: root, Status: st, Console: &console})
	var pe *PhaseError
	if !errors.As(err, &pe) || pe.Phase != "b" || pe.Hint != "fix the thing" {
		t.Fatalf("got %v", err)
	}
	marker, rerr := root.ReadFile(FailedMarker)
	if rerr != nil || !strings.Contains(string(marker), "phase=b") || !strings.Contains(string(marker), "next=fix the thing") {
		t.Errorf("failure marker %q (%v)", marker, rerr)
	}
	if root.Exists(CompleteMarker) {
		t.Error("complete marker after a failure")
	}
	if !strings.Contains(console.String(), "ksboot: [b] FAILED") {
		t.Errorf("console: %s", console.String())
	}
	// A new process (reboot) reads the status back and resumes at b.
	st2, err := state.Read(string(root))
	if err != nil {
		t.Fatal(err)
	}
	d2 := &data{}
	if err := Run(context.Background(), phases(""), d2, Options{Root: root, Status: st2}); err != nil {
		t.Fatal(err)
	}
	if strings.Join(d2.ran, ",") != "b,c" {
		t.Errorf("resume ran %v, want b,c", d2.ran)
	}
	if !root.Exists(CompleteMarker) || root.Exists(FailedMarker) {
		t.Error("markers wrong after success")
	}
	final, _ := state.Read(string(root))
	if final.Phase != "done" || len(final.Phases) != 3 {
		t.Errorf("final status %+v", final)
	}
	for _, p := range final.Phases {
		if p.Outcome != OutcomeDone || p.Duration == "" {
			t.Errorf("phase record %+v", p)
		}
	}
}

func TestSkipOnlyAndUnknown(t *testing.T) {
	root := host.Root(t.TempDir())
	d := &data{}
	if err := Run(context.Background(), phases(""), d, Options{Root: root, Skip: []string{"b"}}); err != nil {
		t.Fatal(err)
	}
	if strings.Join(d.ran, ",") != "a,c" {
		t.Errorf("ran %v", d.ran)
	}
	d = &data{}
	if err := Run(context.Background(), phases(""), d, Options{Root: root, Only: "a", Status: &state.Status{Phases: []state.PhaseRecord{{Name: "a", Outcome: OutcomeDone}}}}); err != nil {
		t.Fatal(err)
	}
	if strings.Join(d.ran, ",") != "a" {
		t.Errorf("only ran %v", d.ran)
	}
	if err := Run(context.Background(), phases(""), d, Options{Root: root, Skip: []string{"zz"}}); err == nil || !strings.Contains(err.Error(), "phases: a, b, c") {
		t.Errorf("unknown skip: %v", err)
	}
}
