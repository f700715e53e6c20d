package collect

import (
	"fmt"
	"io"
	"time"
)

// meter shows the progress of one long transfer on a terminal line that it rewrites in place,
// at most five times a second. A nil meter (no Progress writer) does nothing.
type meter struct {
	w     io.Writer
	label string
	total int64 // 0 when unknown
	done  int64
	last  time.Time
	shown bool
}

func newMeter(w io.Writer, label string, total int64) *meter {
	if w == nil {
		return nil
	}
	return &meter{w: w, label: label, total: total}
}

func (m *meter) add(n int) {
	if m == nil || n <= 0 {
		return
	}
	m.done += int64(n)
	if now := time.Now(); now.Sub(m.last) >= 200*time.Millisecond {
		m.last = now
		m.render()
	}
}

func (m *meter) render() {
	line := fmt.Sprintf("%s  %s", m.label, mib(m.done))
	if m.total > 0 {
		pct := min(100, m.done*100/m.total)
		line = fmt.Sprintf("%s  %s / %s  %3d%%", m.label, mib(m.done), mib(m.total), pct)
	}
	fmt.Fprintf(m.w, "\r\033[K%s", line)
	m.shown = true
}

// finish clears the line, so that the next status line starts clean.
func (m *meter) finish() {
	if m == nil || !m.shown {
		return
	}
	fmt.Fprint(m.w, "\r\033[K")
}

// reader counts what is read through it.
func (m *meter) reader(r io.Reader) io.Reader {
	if m == nil {
		return r
	}
	return meterReader{r, m}
}

type meterReader struct {
	r io.Reader
	m *meter
}

func (r meterReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	r.m.add(n)
	return n, err
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }
