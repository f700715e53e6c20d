package cluster

import (
	"errors"
	"fmt"
	"sort"
	"strings"
)

// Problem is one finding about a cluster file, located by file, line and field path so that a
// user can go straight to it: "cluster.yaml:12: spec.hosts[1].name: ...".
type Problem struct {
	File    string
	Line    int
	Field   string
	Message string
	Warning bool
}

func (p Problem) String() string {
	var b strings.Builder
	b.WriteString(p.File)
	if p.Line > 0 {
		fmt.Fprintf(&b, ":%d", p.Line)
	}
	b.WriteString(": ")
	if p.Field != "" {
		b.WriteString(p.Field)
		b.WriteString(": ")
	}
	if p.Warning {
		b.WriteString("warning: ")
	}
	b.WriteString(p.Message)
	return b.String()
}

// Problems is every finding of one decode or validation pass. Errors and warnings travel together
// so that a user sees everything at once, in file order.
type Problems []Problem

// Errors returns only the problems that are not warnings.
func (ps Problems) Errors() Problems {
	var out Problems
	for _, p := range ps {
		if !p.Warning {
			out = append(out, p)
		}
	}
	return out
}

// Warnings returns only the warnings.
func (ps Problems) Warnings() Problems {
	var out Problems
	for _, p := range ps {
		if p.Warning {
			out = append(out, p)
		}
	}
	return out
}

func (ps Problems) sorted() Problems {
	out := append(Problems(nil), ps...)
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].Line != out[j].Line {
			return out[i].Line < out[j].Line
		}
		return out[i].Field < out[j].Field
	})
	return out
}

// Err returns a *InvalidError when there is at least one error (warnings alone are not failures).
func (ps Problems) Err() error {
	if len(ps.Errors()) == 0 {
		return nil
	}
	return &InvalidError{Problems: ps.sorted()}
}

// InvalidError means the cluster file is wrong; the CLI maps it to exit code 3.
type InvalidError struct {
	Problems Problems
}

func (e *InvalidError) Error() string {
	errs := e.Problems.Errors()
	lines := make([]string, 0, len(errs))
	for _, p := range errs {
		lines = append(lines, p.String())
	}
	if len(lines) == 1 {
		return lines[0]
	}
	return fmt.Sprintf("%d problems:\n%s", len(lines), strings.Join(lines, "\n"))
}

// IsInvalid reports whether err says the cluster file (or node config) is invalid.
func IsInvalid(err error) bool {
	var ie *InvalidError
	return errors.As(err, &ie)
}
