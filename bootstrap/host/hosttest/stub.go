package hosttest

import (
	"context"
	"fmt"
	"regexp"
	"sync"
	"testing"

	"github.com/ksboot/ksboot/bootstrap/host"
)

// Package hosttest holds test doubles for package host.

// Stub is a test host.Runner: each expected command (a regular expression over the command line)
// answers with canned output or an error; an unexpected command fails the test, and so does an
// expectation that was never used (cli/cli's run.Stub).
type Stub struct {
	t     testing.TB
	mu    sync.Mutex
	rules []*stubRule
	Calls []string
}

type stubRule struct {
	re     *regexp.Regexp
	output string
	err    error
	do     func() (string, error)
	used   int
	many   bool
}

// NewStub returns a Stub that checks, at test cleanup, that every expectation was used.
func NewStub(t testing.TB) *Stub {
	s := &Stub{t: t}
	t.Cleanup(func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, r := range s.rules {
			if r.used == 0 {
				t.Errorf("expected command matching %q was never run; ran: %q", r.re, s.Calls)
			}
		}
	})
	return s
}

// Register expects a command line matching pattern once, answering output and err.
func (s *Stub) Register(pattern, output string, err error) {
	s.rules = append(s.rules, &stubRule{re: regexp.MustCompile(pattern), output: output, err: err})
}

// RegisterDo expects a command line matching pattern once and answers with what do returns;
// do stands in for the command's effects (files it writes).
func (s *Stub) RegisterDo(pattern string, do func() (string, error)) {
	s.rules = append(s.rules, &stubRule{re: regexp.MustCompile(pattern), do: do})
}

// Allow expects any number (at least one) of commands matching pattern.
func (s *Stub) Allow(pattern, output string) {
	s.rules = append(s.rules, &stubRule{re: regexp.MustCompile(pattern), output: output, many: true})
}

// Run answers c from the registered expectations.
func (s *Stub) Run(_ context.Context, c host.Cmd) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	line := c.String()
	s.Calls = append(s.Calls, line)
	for _, r := range s.rules {
		if (r.used == 0 || r.many) && r.re.MatchString(line) {
			r.used++
			if r.do != nil {
				r.output, r.err = r.do()
			}
			if r.err != nil {
				return []byte(r.output), &host.RunError{Cmd: line, Output: []byte(r.output), ExitCode: 1, Err: r.err}
			}
			return []byte(r.output), nil
		}
	}
	s.t.Errorf("unexpected command: %s", line)
	return nil, fmt.Errorf("unexpected command in test: %s", line)
}
