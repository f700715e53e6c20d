package host

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"sync"
)

// Cmd is one command to run.
type Cmd struct {
	Name  string
	Args  []string
	Env   []string  // extra KEY=VALUE pairs
	Stdin io.Reader // optional
	// Stream, when set, receives the combined output as it is produced (the journal for
	// long-running commands such as kubeadm); the output is still captured for errors.
	Stream io.Writer
}

// String is the command line as a user would type it.
func (c Cmd) String() string {
	parts := append([]string{c.Name}, c.Args...)
	for i, p := range parts {
		if p == "" || strings.ContainsAny(p, " \t\n'\"$\\|&;<>()*?") {
			parts[i] = "'" + strings.ReplaceAll(p, "'", `'\''`) + "'"
		}
	}
	return strings.Join(parts, " ")
}

// Runner runs commands. Real runs them; DryRun prints them; tests use a Stub.
type Runner interface {
	Run(ctx context.Context, c Cmd) (output []byte, err error)
}

// RunError is a failed command with its argv and output, so the message can say what failed and
// what the command said (kind's exec.RunError).
type RunError struct {
	Cmd      string
	Output   []byte
	ExitCode int
	Err      error
}

func (e *RunError) Error() string {
	out := strings.TrimSpace(string(e.Output))
	if len(out) > 2000 {
		out = "…" + out[len(out)-2000:]
	}
	if out == "" {
		return fmt.Sprintf("command %q failed: %v", e.Cmd, e.Err)
	}
	return fmt.Sprintf("command %q failed: %v: %s", e.Cmd, e.Err, out)
}

func (e *RunError) Unwrap() error { return e.Err }

// Real runs commands on this machine.
type Real struct{}

// Run runs c and returns its combined output.
func (Real) Run(ctx context.Context, c Cmd) ([]byte, error) {
	cmd := exec.CommandContext(ctx, c.Name, c.Args...)
	if len(c.Env) > 0 {
		cmd.Env = append(cmd.Environ(), c.Env...)
	}
	cmd.Stdin = c.Stdin
	var buf bytes.Buffer
	var w io.Writer = &buf
	if c.Stream != nil {
		w = io.MultiWriter(&buf, c.Stream)
	}
	cmd.Stdout, cmd.Stderr = w, w
	err := cmd.Run()
	if err != nil {
		code := -1
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		}
		return buf.Bytes(), &RunError{Cmd: c.String(), Output: buf.Bytes(), ExitCode: code, Err: err}
	}
	return buf.Bytes(), nil
}

// LookPath reports whether a program is on PATH.
func LookPath(name string) bool {
	_, err := exec.LookPath(name)
	return err == nil
}

// DryRun records and prints commands instead of running them; every command "succeeds" with the
// canned output registered for its program, if any.
type DryRun struct {
	Out    io.Writer
	Output map[string]string // program name → output to pretend
	mu     sync.Mutex
	Cmds   []string
}

// Run prints c.
func (d *DryRun) Run(_ context.Context, c Cmd) ([]byte, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.Cmds = append(d.Cmds, c.String())
	if d.Out != nil {
		fmt.Fprintf(d.Out, "would run: %s\n", c.String())
	}
	return []byte(d.Output[c.Name]), nil
}
