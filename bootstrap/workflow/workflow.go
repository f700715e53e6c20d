package workflow

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/ksboot/ksboot/bootstrap/host"
	"github.com/ksboot/ksboot/bootstrap/state"
)

// Marker files, relative to the root.
const (
	CompleteMarker = "/var/lib/ksboot/bootstrap.complete"
	FailedMarker   = "/var/lib/ksboot/bootstrap.failed"
)

// Phase outcomes recorded in status.json.
const (
	OutcomeRunning = "running"
	OutcomeDone    = "done"
	OutcomeFailed  = "failed"
	OutcomeSkipped = "skipped"
)

// Phase is one step of the bootstrap. D is the data the phases share.
type Phase[D any] struct {
	Name  string
	Short string
	Run   func(ctx context.Context, d D) error
	// RunIf, when set, decides whether the phase applies to this node (e.g. kubesphere only on
	// the init node). A phase that does not apply is recorded as skipped.
	RunIf func(d D) bool
}

// Options control one run.
type Options struct {
	Root    host.Root
	Logger  *slog.Logger
	Console io.Writer
	Now     func() time.Time
	// Skip names phases not to run.
	Skip []string
	// Only runs just this phase, even if it already finished.
	Only string
	// Status is the record to update (identity fields are the caller's).
	Status *state.Status
}

// PhaseError is a failed phase: which one, why, and what to do next.
type PhaseError struct {
	Phase string
	Err   error
	Hint  string
}

func (e *PhaseError) Error() string {
	msg := fmt.Sprintf("phase %s failed: %v", e.Phase, e.Err)
	if e.Hint != "" {
		msg += "; " + e.Hint
	}
	return msg
}

func (e *PhaseError) Unwrap() error { return e.Err }

// Hinted is an error that carries advice for the user; phases wrap errors in it.
type Hinted struct {
	Err  error
	Hint string
}

func (h *Hinted) Error() string { return h.Err.Error() }
func (h *Hinted) Unwrap() error { return h.Err }

// WithHint attaches advice to an error.
func WithHint(err error, hint string) error { return &Hinted{Err: err, Hint: hint} }

// Names lists the phase names in order.
func Names[D any](phases []Phase[D]) []string {
	out := make([]string, len(phases))
	for i, p := range phases {
		out[i] = p.Name
	}
	return out
}

// Run runs the phases in order and returns the first failure as a *PhaseError.
func Run[D any](ctx context.Context, phases []Phase[D], d D, o Options) error {
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if o.Console == nil {
		o.Console = io.Discard
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Status == nil {
		o.Status = &state.Status{}
	}
	names := Names(phases)
	for _, s := range o.Skip {
		if !slices.Contains(names, s) {
			return fmt.Errorf("--skip-phases %s: no such phase (phases: %s)", s, strings.Join(names, ", "))
		}
	}
	if o.Only != "" && !slices.Contains(names, o.Only) {
		return fmt.Errorf("no phase %q (phases: %s)", o.Only, strings.Join(names, ", "))
	}
	for _, p := range phases {
		if o.Only != "" && p.Name != o.Only {
			continue
		}
		if o.Only == "" && done(o.Status, p.Name) {
			o.Logger.Info("phase already done", "phase", p.Name)
			continue
		}
		if slices.Contains(o.Skip, p.Name) || (p.RunIf != nil && !p.RunIf(d)) {
			record(o.Status, state.PhaseRecord{Name: p.Name, Outcome: OutcomeSkipped, Started: o.Now().UTC(), Ended: o.Now().UTC()})
			fmt.Fprintf(o.Console, "ksboot: [%s] skipped\n", p.Name)
			continue
		}
		start := o.Now()
		rec := state.PhaseRecord{Name: p.Name, Started: start.UTC(), Outcome: OutcomeRunning}
		record(o.Status, rec)
		o.Status.Phase, o.Status.Error, o.Status.Updated = p.Name, "", start.UTC()
		if err := state.Write(string(o.Root), o.Status); err != nil {
			return err
		}
		o.Logger.Info("phase started", "phase", p.Name, "description", p.Short)
		fmt.Fprintf(o.Console, "ksboot: [%s] %s\n", p.Name, p.Short)
		err := p.Run(ctx, d)
		end := o.Now()
		rec.Ended, rec.Duration = end.UTC(), end.Sub(start).Round(100*time.Millisecond).String()
		if err != nil {
			pe := &PhaseError{Phase: p.Name, Err: err, Hint: hintOf(err)}
			rec.Outcome, rec.Error = OutcomeFailed, err.Error()
			record(o.Status, rec)
			o.Status.Error, o.Status.Updated = pe.Error(), end.UTC()
			if werr := state.Write(string(o.Root), o.Status); werr != nil {
				o.Logger.Error("cannot record the failure", "error", werr)
			}
			marker := fmt.Sprintf("phase=%s\ntime=%s\nreason=%s\n", p.Name, end.UTC().Format(time.RFC3339), oneLine(err.Error()))
			if pe.Hint != "" {
				marker += "next=" + oneLine(pe.Hint) + "\n"
			}
			if _, werr := o.Root.WriteFile(FailedMarker, []byte(marker), 0o600); werr != nil {
				o.Logger.Error("cannot write the failure marker", "error", werr)
			}
			o.Logger.Error("phase failed", "phase", p.Name, "duration", rec.Duration, "error", err.Error())
			fmt.Fprintf(o.Console, "ksboot: [%s] FAILED after %s: %v\n", p.Name, rec.Duration, pe)
			return pe
		}
		rec.Outcome = OutcomeDone
		record(o.Status, rec)
		o.Status.Updated = end.UTC()
		if err := state.Write(string(o.Root), o.Status); err != nil {
			return err
		}
		o.Logger.Info("phase done", "phase", p.Name, "duration", rec.Duration)
		fmt.Fprintf(o.Console, "ksboot: [%s] done in %s\n", p.Name, rec.Duration)
	}
	if o.Only != "" {
		return nil
	}
	o.Status.Phase, o.Status.Error, o.Status.Updated = "done", "", o.Now().UTC()
	if err := state.Write(string(o.Root), o.Status); err != nil {
		return err
	}
	if err := o.Root.Remove(FailedMarker); err != nil {
		return err
	}
	if _, err := o.Root.WriteFile(CompleteMarker, []byte(o.Now().UTC().Format(time.RFC3339)+"\n"), 0o600); err != nil {
		return err
	}
	return nil
}

func done(s *state.Status, name string) bool {
	for _, r := range s.Phases {
		if r.Name == name {
			return r.Outcome == OutcomeDone
		}
	}
	return false
}

// record replaces the phase's record or appends it.
func record(s *state.Status, rec state.PhaseRecord) {
	for i := range s.Phases {
		if s.Phases[i].Name == rec.Name {
			s.Phases[i] = rec
			return
		}
	}
	s.Phases = append(s.Phases, rec)
}

func hintOf(err error) string {
	var h *Hinted
	if errors.As(err, &h) {
		return h.Hint
	}
	return ""
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }
