// Package testlog holds what tests use to look at what a node logged.
package testlog

import (
	"context"
	"log/slog"
	"strings"
	"sync"
)

// Capture is a slog.Handler that keeps the messages of the records logged at Min or above, so
// that a test can require a line (or its absence). Attributes and groups are not kept.
type Capture struct {
	Min slog.Level

	mu   sync.Mutex
	msgs []string
}

// Enabled implements slog.Handler.
func (c *Capture) Enabled(_ context.Context, l slog.Level) bool { return l >= c.Min }

// Handle implements slog.Handler.
func (c *Capture) Handle(_ context.Context, r slog.Record) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.msgs = append(c.msgs, r.Message)
	return nil
}

// WithAttrs implements slog.Handler.
func (c *Capture) WithAttrs([]slog.Attr) slog.Handler { return c }

// WithGroup implements slog.Handler.
func (c *Capture) WithGroup(string) slog.Handler { return c }

// Matching returns the kept messages that contain part.
func (c *Capture) Matching(part string) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, m := range c.msgs {
		if strings.Contains(m, part) {
			out = append(out, m)
		}
	}
	return out
}

// Has reports whether a kept message contains part.
func (c *Capture) Has(part string) bool { return len(c.Matching(part)) > 0 }
