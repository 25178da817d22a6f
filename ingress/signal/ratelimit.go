package signal

import (
	"fmt"
	"time"
)

// Rate is a token bucket: PerSecond tokens flow in, at most Burst are kept, a message takes one.
type Rate struct {
	PerSecond float64
	Burst     int
}

// Limits bound what one peer's client messages may cost the node. Every message the session
// core handles (publish, unpublish, subscribe, unsubscribe, mute, update, data, and bad or
// unknown ones; not leave) takes a token of its class; a message that finds its bucket empty
// is refused with a rate_limited error and costs a token of Excess; a peer whose Excess bucket
// is empty as well keeps flooding, and its session is closed (peer.left, reason kicked).
// The buckets live in the session core: they end with the session.
type Limits struct {
	// Events: messages that append an event or change subscriptions (default 10/s, burst 20).
	Events Rate
	// Data: data messages, fanned out on core NATS and never logged (default 50/s, burst 100).
	Data Rate
	// Excess: refused messages tolerated before the session is closed (default 2/s, burst
	// 20: a client that briefly overshoots gets errors, one that floods is cut off after about
	// twenty).
	Excess Rate
}

// DefaultLimits are the limits a zero Limits stands for.
func DefaultLimits() Limits {
	return Limits{
		Events: Rate{PerSecond: 10, Burst: 20},
		Data:   Rate{PerSecond: 50, Burst: 100},
		Excess: Rate{PerSecond: 2, Burst: 20},
	}
}

// WithDefaults fills each zero Rate with its default.
func (l Limits) WithDefaults() Limits {
	d := DefaultLimits()
	if l.Events == (Rate{}) {
		l.Events = d.Events
	}
	if l.Data == (Rate{}) {
		l.Data = d.Data
	}
	if l.Excess == (Rate{}) {
		l.Excess = d.Excess
	}
	return l
}

// Validate reports a rate that cannot work (zero rates are defaults, see WithDefaults).
func (l Limits) Validate() error {
	for name, r := range map[string]Rate{"events": l.Events, "data": l.Data, "excess": l.Excess} {
		if r == (Rate{}) {
			continue
		}
		if r.PerSecond <= 0 || r.Burst < 1 {
			return fmt.Errorf("signal: %s rate limit %v/s burst %d: want a positive rate and a burst of at least 1", name, r.PerSecond, r.Burst)
		}
	}
	return nil
}

// bucket is a sans-IO token bucket: it reads no clock, the caller passes now.
type bucket struct {
	rate   Rate
	tokens float64
	last   time.Time
}

func newBucket(r Rate) bucket { return bucket{rate: r, tokens: float64(r.Burst)} }

// take refills the bucket for the time since the last call and takes a token if there is one.
func (b *bucket) take(now time.Time) bool {
	if !b.last.IsZero() {
		if d := now.Sub(b.last); d > 0 {
			b.tokens = min(float64(b.rate.Burst), b.tokens+d.Seconds()*b.rate.PerSecond)
		}
	}
	if b.last.IsZero() || now.After(b.last) {
		b.last = now
	}
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}
