package webhook

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"sync"
	"time"
)

// Breaker configures an endpoint's circuit breaker. The zero value is the default breaker.
//
// The breaker tracks whether the receiver is up; an event's attempts track whether that event
// is accepted. Failures that say the receiver is down or overloaded (refused or reset
// connections, timeouts, 5xx, 408, 429) count towards opening the circuit; other 4xx answers
// are about the one event (the receiver is up and refuses it), count only towards that event's
// attempts and, like a 2xx, end a run of failures.
type Breaker struct {
	// Off disables the breaker: every failure counts towards the event's attempts, as if the
	// receiver could never be down as a whole.
	Off bool
	// Failures in a row (across the endpoint's lanes, no 2xx or 4xx answer between them) open
	// the circuit (default 5). It opens no later than MaxAttempts failures, so that an outage
	// opens it before an event parks.
	Failures int
	// Window: a failure more than Window after the previous one starts a new run (default 1
	// min), so that rare failures spread over hours do not open the circuit.
	Window time.Duration
}

// Breaker defaults.
const (
	DefaultBreakerFailures = 5
	DefaultBreakerWindow   = time.Minute
)

func (b Breaker) validate() error {
	if b.Failures < 0 || b.Window < 0 {
		return errors.New("breaker failures and window must not be negative")
	}
	return nil
}

func (b Breaker) withDefaults() Breaker {
	if b.Failures == 0 {
		b.Failures = DefaultBreakerFailures
	}
	if b.Window == 0 {
		b.Window = DefaultBreakerWindow
	}
	return b
}

// outcome is what one request says about the receiver.
type outcome uint8

const (
	// outcomeAccepted: 2xx.
	outcomeAccepted outcome = iota
	// outcomeRefused: the receiver answered and refused this event (4xx but 408 and 429).
	outcomeRefused
	// outcomeDown: the receiver is down or overloaded (no answer, 5xx, 408, 429).
	outcomeDown
)

// classify tells apart a receiver that is down from one that refuses an event.
func classify(err error) outcome {
	if err == nil {
		return outcomeAccepted
	}
	var se *StatusError
	if errors.As(err, &se) && se.Code/100 == 4 && se.Code != http.StatusRequestTimeout && se.Code != http.StatusTooManyRequests {
		return outcomeRefused
	}
	return outcomeDown // timeouts, refused and reset connections, 5xx, 408, 429
}

// circuitState is closed (sending), open (holding every lane) or half-open (one probe out).
type circuitState uint8

const (
	circuitClosed circuitState = iota
	circuitOpen
	circuitHalfOpen
)

func (s circuitState) String() string {
	return [...]string{"closed", "open", "half-open"}[s]
}

// grant answers a lane that asks to send.
type grant uint8

const (
	grantWait  grant = iota // hold the event
	grantSend               // circuit closed: send
	grantProbe              // send it as the half-open probe
)

// circuit is the breaker's state machine, without clock, goroutines or I/O: the caller passes
// now and waits itself. Lanes are numbered 0..n-1.
type circuit struct {
	failures int // 0: breaker off
	window   time.Duration
	// initial and max bound the probe backoff; jitter maps a wait to the jittered one.
	initial, max time.Duration
	jitter       func(time.Duration) time.Duration

	state     circuitState
	fails     int // failures in the current run, while closed
	lastFail  time.Time
	openedAt  time.Time
	probeAt   time.Time // while open: no probe before
	probes    int       // failed probes since the circuit opened
	lastProbe int       // lane of the last probe: the next goes to the next waiting lane
	waiting   []bool
}

func newCircuit(lanes int, b Breaker, maxAttempts int, initial, max time.Duration, jitter func(time.Duration) time.Duration) *circuit {
	c := &circuit{initial: initial, max: max, jitter: jitter, waiting: make([]bool, lanes), lastProbe: -1}
	if !b.Off {
		b = b.withDefaults()
		c.failures, c.window = min(b.Failures, maxAttempts), b.Window
	}
	return c
}

// ask says whether lane may send now. grantWait comes with how long until the next probe
// (0: until the state changes); a waiting lane asks again then.
func (c *circuit) ask(lane int, now time.Time) (grant, time.Duration) {
	switch c.state {
	case circuitClosed:
		c.waiting[lane] = false
		return grantSend, 0
	case circuitOpen:
		c.waiting[lane] = true
		if now.Before(c.probeAt) {
			return grantWait, c.probeAt.Sub(now)
		}
		// The probe rotates over the waiting lanes, so that one event the receiver keeps
		// failing does not hold the circuit open while other lanes' events would pass.
		if c.nextProbeLane() != lane {
			return grantWait, 0
		}
		c.waiting[lane] = false
		c.lastProbe = lane
		c.state = circuitHalfOpen
		return grantProbe, 0
	default: // half-open: the probe is out
		c.waiting[lane] = true
		return grantWait, 0
	}
}

func (c *circuit) nextProbeLane() int {
	n := len(c.waiting)
	for i := 1; i <= n; i++ {
		if l := (c.lastProbe + i + n) % n; c.waiting[l] {
			return l
		}
	}
	return -1
}

// leave forgets a lane that stopped waiting without sending (shutdown).
func (c *circuit) leave(lane int) { c.waiting[lane] = false }

// record takes the outcome of a request a lane sent (probe: under grantProbe) and says
// whether a failure counts towards the event's attempts: not when it found the circuit open
// or opened it, since then the receiver was down, not refusing the event.
func (c *circuit) record(probe bool, o outcome, retryAfter time.Duration, now time.Time) (counts bool) {
	if c.failures == 0 {
		return o != outcomeAccepted
	}
	if o != outcomeDown {
		// An answer, even a refusal, shows the receiver is up.
		c.fails = 0
		c.state = circuitClosed
		return o == outcomeRefused
	}
	switch {
	case c.state == circuitClosed:
		if c.fails > 0 && now.Sub(c.lastFail) > c.window {
			c.fails = 0
		}
		c.fails++
		c.lastFail = now
		if c.fails < c.failures {
			return true
		}
		c.state, c.openedAt, c.probes = circuitOpen, now, 0
		c.probeAt = now.Add(c.probeWait(retryAfter))
		return false
	case probe:
		c.state = circuitOpen
		c.probes++
		c.probeAt = now.Add(c.probeWait(retryAfter))
		return false
	default: // a request sent before the circuit opened
		return false
	}
}

// probeWait is the wait before the next probe: the retry backoff after as many failures as
// there were failed probes, jittered, or the receiver's Retry-After if longer (up to max).
func (c *circuit) probeWait(retryAfter time.Duration) time.Duration {
	d := c.initial
	for i := 0; i < c.probes && d < c.max; i++ {
		d *= 2
	}
	d = c.jitter(min(d, c.max))
	if retryAfter > d {
		d = min(retryAfter, c.max)
	}
	return d
}

func jitter(d time.Duration) time.Duration { return d/2 + rand.N(d/2+1) }

// breaker shares a circuit between an endpoint's lanes and logs its transitions.
type breaker struct {
	log *slog.Logger

	mu      sync.Mutex
	c       *circuit
	changed chan struct{} // closed and replaced when the state changes
	opens   int64
}

func newBreaker(c *circuit, log *slog.Logger) *breaker {
	return &breaker{c: c, log: log, changed: make(chan struct{})}
}

// acquire blocks until lane may send (probe: as the half-open probe) or ctx ends.
func (b *breaker) acquire(ctx context.Context, lane int) (probe bool, err error) {
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		b.mu.Lock()
		before := b.c.state
		g, wait := b.c.ask(lane, time.Now())
		b.transition(before)
		ch := b.changed
		b.mu.Unlock()
		if g != grantWait {
			return g == grantProbe, nil
		}
		var tick <-chan time.Time
		if wait > 0 {
			if timer == nil {
				timer = time.NewTimer(wait)
			} else {
				timer.Reset(wait)
			}
			tick = timer.C
		}
		select {
		case <-ctx.Done():
			b.mu.Lock()
			b.c.leave(lane)
			b.mu.Unlock()
			return false, ctx.Err()
		case <-ch:
		case <-tick:
		}
	}
}

// changes returns a channel closed at the next change of state.
func (b *breaker) changes() <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.changed
}

// record takes a request's result; see circuit.record.
func (b *breaker) record(probe bool, err error) (counts bool) {
	var retryAfter time.Duration
	var se *StatusError
	if errors.As(err, &se) {
		retryAfter = se.RetryAfter
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	before := b.c.state
	counts = b.c.record(probe, classify(err), retryAfter, time.Now())
	if probe && b.c.state == circuitOpen {
		b.log.Debug("webhook probe failed; circuit stays open", "err", err,
			"failed_probes", b.c.probes, "next_probe_in", time.Until(b.c.probeAt).Round(time.Millisecond))
	}
	b.transition(before)
	return counts
}

// transition wakes the waiting lanes and logs when the state changed. b.mu is held.
func (b *breaker) transition(before circuitState) {
	now := b.c.state
	if now == before {
		return
	}
	close(b.changed)
	b.changed = make(chan struct{})
	switch {
	case before == circuitClosed && now == circuitOpen:
		b.opens++
		b.log.Warn("webhook circuit open: receiver down, holding every lane; events wait in the log, none parked",
			"failures", b.c.fails, "next_probe_in", time.Until(b.c.probeAt).Round(time.Millisecond))
	case now == circuitClosed:
		b.log.Info("webhook circuit closed: receiver back, lanes resume",
			"open_for", time.Since(b.c.openedAt).Round(time.Millisecond), "failed_probes", b.c.probes)
	}
}

// open reports whether the circuit is open or half-open, and how many times it opened.
func (b *breaker) stats() (open bool, opens int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.c.state != circuitClosed, b.opens
}
