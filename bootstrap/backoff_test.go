package bootstrap

import (
	"bytes"
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ksboot/ksboot/bootstrap/host/hosttest"
	"github.com/ksboot/ksboot/bootstrap/state"
	"github.com/ksboot/ksboot/bootstrap/workflow"
	"github.com/ksboot/ksboot/systemd"
)

func TestRetryDelay(t *testing.T) {
	for _, tc := range []struct {
		failures int
		want     time.Duration
	}{
		{0, 0},
		{1, 0}, // the first retry: the unit's RestartSec alone
		{2, time.Minute},
		{3, 2 * time.Minute},
		{4, 4 * time.Minute},
		{5, 8 * time.Minute},
		{6, 10 * time.Minute},
		{7, 10 * time.Minute},
		{1 << 30, 10 * time.Minute}, // no overflow however long a node keeps failing
	} {
		if got := RetryDelay(tc.failures); got != tc.want {
			t.Errorf("RetryDelay(%d) = %s, want %s", tc.failures, got, tc.want)
		}
	}
}

// TestRetryBaseIsRestartSec: the schedule's first step is the unit's RestartSec, which the
// unit's comment and RetryDelay's promise ("the pause doubles from 30 s") rely on.
func TestRetryBaseIsRestartSec(t *testing.T) {
	var restart string
	for _, s := range systemd.BootstrapUnit("c").Sections {
		for _, d := range s.Directives {
			if d.Key == "RestartSec" {
				restart = d.Value
			}
		}
	}
	if got, err := time.ParseDuration(restart); err != nil || got != RetryBase || RetryDelay(2) != 2*got {
		t.Errorf("RestartSec=%s (%v), RetryBase %s, RetryDelay(2) %s: the pause would not double from RestartSec", restart, err, RetryBase, RetryDelay(2))
	}
}

func TestRetryWait(t *testing.T) {
	for _, tc := range []struct {
		name     string
		failures int
		since    time.Duration
		want     time.Duration
	}{
		{"first retry", 1, 30 * time.Second, 0},
		{"restarted after RestartSec", 3, 30 * time.Second, 90 * time.Second},
		{"rebooted long after", 6, time.Hour, 0},
		{"clock went backwards", 4, -time.Hour, 4 * time.Minute},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := RetryWait(tc.failures, tc.since); got != tc.want {
				t.Errorf("RetryWait(%d, %s) = %s, want %s", tc.failures, tc.since, got, tc.want)
			}
		})
	}
}

// backoffAgent runs the agent for real (not a dry run) against a temporary root, with one
// phase whose outcome the test decides, a fake clock and a recording sleep.
type backoffAgent struct {
	t       *testing.T
	root    string
	now     time.Time
	fail    map[string]bool // phase name → fails
	ran     []string
	slept   []time.Duration
	console bytes.Buffer
	sleep   func(ctx context.Context, d time.Duration) error
}

func newBackoffAgent(t *testing.T) *backoffAgent {
	a := &backoffAgent{t: t, root: t.TempDir(), now: time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC), fail: map[string]bool{}}
	writeNodeConfig(t, a.root, false)
	return a
}

func (a *backoffAgent) phase(name string) workflow.Phase[*Node] {
	return workflow.Phase[*Node]{Name: name, Short: "test phase " + name, Run: func(context.Context, *Node) error {
		a.ran = append(a.ran, name)
		if a.fail[name] {
			return errors.New(name + " broke")
		}
		return nil
	}}
}

// run starts the agent once, as systemd would after RestartSec (the clock moves 30 s first).
func (a *backoffAgent) run(ctx context.Context, o Options) error {
	a.t.Helper()
	a.now = a.now.Add(30 * time.Second)
	a.ran, a.slept = nil, nil
	a.console.Reset()
	if !o.DryRun {
		stub := hosttest.NewStub(a.t)
		stub.Allow(`^uname -m$`, "x86_64\n")
		o.Exec = stub
	}
	o.ConfigPath, o.Root, o.Console, o.Now = "/etc/ksboot/node.yaml", a.root, &a.console, func() time.Time { return a.now }
	o.Interfaces = func() ([]string, error) { return []string{"192.168.0.11/24"}, nil }
	o.Sleep = func(ctx context.Context, d time.Duration) error {
		a.slept = append(a.slept, d)
		if a.sleep != nil {
			return a.sleep(ctx, d)
		}
		a.now = a.now.Add(d)
		return nil
	}
	_, err := run(ctx, o, []workflow.Phase[*Node]{a.phase("one"), a.phase("two")})
	return err
}

func (a *backoffAgent) retry() *state.Retry {
	a.t.Helper()
	st, err := state.Read(a.root)
	if err != nil || st == nil {
		a.t.Fatalf("status: %v %v", st, err)
	}
	return st.Retry
}

// TestRunBacksOffRepeatedFailures restarts the agent as systemd does after a failure and checks
// that the pause before each retry of the same phase grows as RetryDelay says, that a different
// failing phase starts counting again, and that success resets the count.
func TestRunBacksOffRepeatedFailures(t *testing.T) {
	a := newBackoffAgent(t)
	ctx := context.Background()
	a.fail["one"] = true
	var waits []time.Duration
	for i := 1; i <= 7; i++ {
		if err := a.run(ctx, Options{}); err == nil {
			t.Fatalf("run %d: phase one did not fail", i)
		}
		if len(a.ran) != 1 || a.ran[0] != "one" {
			t.Fatalf("run %d ran %v", i, a.ran)
		}
		if r := a.retry(); r == nil || r.Phase != "one" || r.Failures != i || !r.Failed.Equal(a.now) {
			t.Fatalf("run %d: retry record %+v", i, r)
		}
		var w time.Duration
		if len(a.slept) == 1 {
			w = a.slept[0]
			line := "ksboot: [one] failed " + strconv.Itoa(i-1) + " times in a row; retrying in " + w.String()
			if !strings.Contains(a.console.String(), line) {
				t.Errorf("run %d: console lacks %q:\n%s", i, line, a.console.String())
			}
		} else if len(a.slept) > 1 {
			t.Fatalf("run %d slept %v", i, a.slept)
		}
		waits = append(waits, w)
	}
	// Each start comes 30 s (RestartSec) after the failure, which counts toward the delay.
	want := []time.Duration{0, 0, 30 * time.Second, 90 * time.Second, 210 * time.Second, 450 * time.Second, 570 * time.Second}
	for i := range want {
		if waits[i] != want[i] {
			t.Errorf("waits before runs 1..7 = %v, want %v", waits, want)
			break
		}
	}

	// Phase one passes now and two fails: a new problem is retried at once.
	a.fail["one"], a.fail["two"] = false, true
	if err := a.run(ctx, Options{}); err == nil {
		t.Fatal("phase two did not fail")
	}
	if r := a.retry(); r == nil || r.Phase != "two" || r.Failures != 1 {
		t.Fatalf("retry record after phase two failed: %+v", r)
	}
	if err := a.run(ctx, Options{}); err == nil {
		t.Fatal("phase two did not fail")
	}
	if len(a.slept) != 0 || a.retry().Failures != 2 {
		t.Errorf("second failure of two: slept %v, retry %+v", a.slept, a.retry())
	}

	// Success resets the count.
	a.fail["two"] = false
	if err := a.run(ctx, Options{}); err != nil {
		t.Fatal(err)
	}
	if len(a.slept) != 1 || a.slept[0] != 30*time.Second {
		t.Errorf("before the run that succeeded: slept %v, want [30s]", a.slept)
	}
	if r := a.retry(); r != nil {
		t.Errorf("retry record after success: %+v", r)
	}
}

// TestBackoffSkippedForDryRunAndSinglePhase: neither a dry run nor `ksboot agent phase` waits,
// and neither counts a failure; a successful `agent phase` of the failing phase resets.
func TestBackoffSkippedForDryRunAndSinglePhase(t *testing.T) {
	a := newBackoffAgent(t)
	ctx := context.Background()
	a.fail["one"] = true
	for range 4 {
		_ = a.run(ctx, Options{})
	}
	if r := a.retry(); r == nil || r.Failures != 4 {
		t.Fatalf("retry record %+v", r)
	}
	if err := a.run(ctx, Options{DryRun: true}); err == nil {
		t.Fatal("phase one did not fail")
	}
	if err := a.run(ctx, Options{Only: "one"}); err == nil {
		t.Fatal("phase one did not fail")
	}
	if len(a.slept) != 0 || a.retry().Failures != 4 {
		t.Errorf("agent phase one: slept %v, retry %+v", a.slept, a.retry())
	}
	a.fail["one"] = false
	if err := a.run(ctx, Options{Only: "two"}); err != nil {
		t.Fatal(err)
	}
	if a.retry() == nil {
		t.Error("a successful run of another phase reset the count")
	}
	if err := a.run(ctx, Options{Only: "one"}); err != nil {
		t.Fatal(err)
	}
	if len(a.slept) != 0 || a.retry() != nil {
		t.Errorf("agent phase one succeeded: slept %v, retry %+v", a.slept, a.retry())
	}
}

// TestBackoffInterrupted: a stop during the pause ends the run without running the phase.
func TestBackoffInterrupted(t *testing.T) {
	a := newBackoffAgent(t)
	a.fail["one"] = true
	for range 3 {
		_ = a.run(context.Background(), Options{})
	}
	ctx, cancel := context.WithCancel(context.Background())
	a.sleep = func(ctx context.Context, _ time.Duration) error {
		cancel()
		return sleep(ctx, time.Hour)
	}
	err := a.run(ctx, Options{})
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "before retrying phase one") {
		t.Fatalf("got %v, want the wait's cancellation", err)
	}
	if len(a.ran) != 0 {
		t.Errorf("ran %v after the wait was interrupted", a.ran)
	}
	if r := a.retry(); r == nil || r.Failures != 3 {
		t.Errorf("an interrupted wait changed the count: %+v", r)
	}
}
