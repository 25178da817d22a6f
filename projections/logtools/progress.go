package logtools

import (
	"fmt"
	"io"
	"os"
	"time"
)

// Progress reports a long read on stderr (events, events/s, share done, ETA) when stderr is a
// terminal, and stays silent when it is piped or redirected, so scripts get clean output.
type Progress struct {
	w     io.Writer
	label string
	// first and end bound the read in stream sequences; the share done is measured in them
	// (other rooms' events between them make it an estimate).
	first, end uint64
	start      time.Time
	lastPrint  time.Time
	n          int
	printed    bool
}

// NewProgress returns a reporter, or nil (which reports nothing) when w is not a terminal.
func NewProgress(w io.Writer, label string, end uint64) *Progress {
	if !isTerminal(w) {
		return nil
	}
	now := time.Now()
	return &Progress{w: w, label: label, end: end, start: now, lastPrint: now}
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// Tick counts one event at stream sequence seq.
func (p *Progress) Tick(seq uint64) {
	if p == nil {
		return
	}
	if p.n == 0 {
		p.first = seq
	}
	p.n++
	if p.n%1024 != 0 {
		return
	}
	now := time.Now()
	if now.Sub(p.lastPrint) < 250*time.Millisecond {
		return
	}
	p.lastPrint = now
	elapsed := now.Sub(p.start).Seconds()
	rate := float64(p.n) / elapsed
	line := fmt.Sprintf("%s: %d events, %.0f events/s", p.label, p.n, rate)
	if p.end > p.first && seq >= p.first {
		done := float64(seq-p.first+1) / float64(p.end-p.first+1)
		eta := time.Duration(elapsed * (1 - done) / done * float64(time.Second))
		line += fmt.Sprintf(", %3.0f%%, ETA %s", 100*done, eta.Round(time.Second))
	}
	fmt.Fprintf(p.w, "\r\033[K%s", line)
	p.printed = true
}

// Done clears the progress line and, if one was shown, prints the total.
func (p *Progress) Done() {
	if p == nil || !p.printed {
		return
	}
	d := time.Since(p.start)
	fmt.Fprintf(p.w, "\r\033[K%s: %d events in %s (%.0f events/s)\n", p.label, p.n, d.Round(time.Millisecond), float64(p.n)/d.Seconds())
}

// ParseInstant reads an instant given on the command line: RFC 3339 (with or without a
// fraction), or a duration ago relative to now ("5m", "2h30m").
func ParseInstant(s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t.UTC(), nil
	}
	if d, err := time.ParseDuration(s); err == nil {
		if d < 0 {
			return time.Time{}, fmt.Errorf("%q: a duration ago must not be negative", s)
		}
		return now.Add(-d).UTC(), nil
	}
	return time.Time{}, fmt.Errorf("%q is neither an RFC 3339 time (2026-11-03T14:03:00Z) nor a duration ago (5m)", s)
}
