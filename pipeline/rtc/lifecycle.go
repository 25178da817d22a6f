package rtc

import "time"

// State of a WebRTC session.
type State int

const (
	StateNew        State = iota // created, no offer answered yet
	StateConnecting              // answered, waiting for ICE/DTLS
	StateConnected               // media can flow
	StateClosed                  // ended; every later input is ignored
)

func (s State) String() string {
	return [...]string{"new", "connecting", "connected", "closed"}[s]
}

// Timeouts of a session. Zero values take the defaults.
type Timeouts struct {
	// Connect ends a session that has not connected this long after its answer (default 30 s).
	Connect time.Duration
	// DisconnectGrace is how long a disconnected session may recover before it ends (10 s).
	DisconnectGrace time.Duration
	// PLIInterval is the minimum gap between two keyframe requests for one track (300 ms).
	PLIInterval time.Duration
}

func (t Timeouts) withDefaults() Timeouts {
	if t.Connect == 0 {
		t.Connect = 30 * time.Second
	}
	if t.DisconnectGrace == 0 {
		t.DisconnectGrace = 10 * time.Second
	}
	if t.PLIInterval == 0 {
		t.PLIInterval = 300 * time.Millisecond
	}
	return t
}

// Lifecycle is the sans-IO connection lifecycle WHIP and WHEP sessions share: states, the
// connect timeout, the disconnect grace period and keyframe-request throttling. Inputs carry
// now; nothing here reads a clock.
type Lifecycle struct {
	t       Timeouts
	state   State
	since   time.Time
	discon  bool
	lastPLI map[string]time.Time
}

// NewLifecycle returns a lifecycle in StateNew.
func NewLifecycle(t Timeouts) Lifecycle {
	return Lifecycle{t: t.withDefaults(), lastPLI: map[string]time.Time{}}
}

// State is the current state.
func (l *Lifecycle) State() State { return l.state }

// Answer moves a new session to connecting; false if it was not new.
func (l *Lifecycle) Answer(now time.Time) bool {
	if l.state != StateNew {
		return false
	}
	l.state, l.since = StateConnecting, now
	return true
}

// Connected records that ICE and DTLS are up (again).
func (l *Lifecycle) Connected(now time.Time) {
	if l.state == StateConnecting || l.state == StateConnected {
		l.state, l.since, l.discon = StateConnected, now, false
	}
}

// Disconnected records lost connectivity, which may come back within the grace period.
func (l *Lifecycle) Disconnected(now time.Time) {
	if l.state == StateConnected && !l.discon {
		l.discon, l.since = true, now
	}
}

// Expired returns the reason the session must end at now ("timeout", "disconnected"), or "".
func (l *Lifecycle) Expired(now time.Time) string {
	switch {
	case l.state == StateConnecting && now.Sub(l.since) >= l.t.Connect:
		return "timeout"
	case l.state == StateConnected && l.discon && now.Sub(l.since) >= l.t.DisconnectGrace:
		return "disconnected"
	}
	return ""
}

// Close moves to StateClosed. It returns whether the session had been answered (and so has
// events to close) and false for a second call.
func (l *Lifecycle) Close() (wasOpen, answered bool) {
	if l.state == StateClosed {
		return false, false
	}
	answered = l.state != StateNew
	l.state = StateClosed
	return true, answered
}

// AllowPLI reports whether a keyframe request for track may go out at now, and records it.
func (l *Lifecycle) AllowPLI(now time.Time, track string) bool {
	if l.state == StateClosed {
		return false
	}
	if last, ok := l.lastPLI[track]; ok && now.Sub(last) < l.t.PLIInterval {
		return false
	}
	l.lastPLI[track] = now
	return true
}
