package audiolevel

import (
	"fmt"
	"time"
)

// Config tunes speech detection. The zero value of a field means its default.
type Config struct {
	// Tau is the time constant of the level smoothing (100 ms): a voice reaches the start
	// threshold about 130 ms after it begins from silence.
	Tau time.Duration
	// Start is the smoothed level at or louder than which a quiet track starts speaking
	// (45: -45 dBov); Stop the level quieter than which a speaking track counts as quiet (55).
	// Between the two the state holds.
	Start, Stop uint8
	// Hold is how long a speaking track must stay quiet before it stops speaking (1 s): the
	// pauses between words and sentences do not end a turn.
	Hold time.Duration
	// MinQuiet is how long a track that stopped stays quiet before it may start again
	// (250 ms). With Hold it bounds a track's changes to two per Hold+MinQuiet.
	MinQuiet time.Duration
	// Every is how often a speaking track's level is reported (100 ms); Idle how often a
	// quiet one's is (1 s). A change of state is reported at once.
	Every, Idle time.Duration
}

// Defaults returns the configuration with every default set.
func (c Config) Defaults() Config {
	if c.Tau <= 0 {
		c.Tau = 100 * time.Millisecond
	}
	if c.Start == 0 {
		c.Start = 45
	}
	if c.Stop == 0 {
		c.Stop = 55
	}
	if c.Hold <= 0 {
		c.Hold = time.Second
	}
	if c.MinQuiet <= 0 {
		c.MinQuiet = 250 * time.Millisecond
	}
	if c.Every <= 0 {
		c.Every = 100 * time.Millisecond
	}
	if c.Idle <= 0 {
		c.Idle = time.Second
	}
	return c
}

// Validate reports a configuration that cannot work.
func (c Config) Validate() error {
	c = c.Defaults()
	if c.Start > Silence || c.Stop > Silence {
		return fmt.Errorf("audiolevel: thresholds %d/%d beyond silence (%d)", c.Start, c.Stop, Silence)
	}
	if c.Stop < c.Start {
		return fmt.Errorf("audiolevel: stop level %d louder than start level %d: no hysteresis", c.Stop, c.Start)
	}
	return nil
}

// Meter follows one audio track: its smoothed level and whether it is speaking. It is the
// per-track core the publisher's node runs on every packet; it allocates nothing.
type Meter struct {
	cfg      Config
	started  bool
	smoothed float64 // -dBov
	last     time.Time
	speaking bool
	since    time.Time // when the current state began
	quiet    time.Time // when the level last went quieter than Stop while speaking (zero: not quiet)
	reported time.Time
	dirty    bool // the state changed and was not reported yet
}

// NewMeter returns a meter with cfg's defaults filled in.
func NewMeter(cfg Config) *Meter { return &Meter{cfg: cfg.Defaults()} }

// Observe takes one packet's level at now and reports whether the speaking state changed.
func (m *Meter) Observe(level uint8, now time.Time) bool {
	level = min(level, Silence)
	if !m.started {
		m.started, m.smoothed, m.since = true, float64(level), now
	} else {
		k := float64(now.Sub(m.last)) / float64(m.cfg.Tau)
		m.smoothed += (float64(level) - m.smoothed) * min(max(k, 0), 1)
	}
	m.last = now
	return m.step(now)
}

// Tick advances time without a packet (a sender that stopped, or one using DTX: no packets
// in silence) and reports whether the speaking state changed. A track silent for Tau counts
// as silence.
func (m *Meter) Tick(now time.Time) bool {
	if !m.started || now.Sub(m.last) < m.cfg.Tau {
		return false
	}
	m.smoothed = Silence
	return m.step(now)
}

func (m *Meter) step(now time.Time) bool {
	s := m.smoothed
	if !m.speaking {
		if s <= float64(m.cfg.Start) && now.Sub(m.since) >= m.cfg.MinQuiet {
			m.speaking, m.since, m.quiet, m.dirty = true, now, time.Time{}, true
			return true
		}
		return false
	}
	if s <= float64(m.cfg.Stop) {
		m.quiet = time.Time{}
		return false
	}
	if m.quiet.IsZero() {
		m.quiet = now
	}
	if now.Sub(m.quiet) >= m.cfg.Hold {
		m.speaking, m.since, m.quiet, m.dirty = false, now, time.Time{}, true
		return true
	}
	return false
}

// Speaking reports whether the track is speaking.
func (m *Meter) Speaking() bool { return m.speaking }

// Level is the smoothed level, -dBov (0 loudest, 127 silence).
func (m *Meter) Level() uint8 {
	if !m.started {
		return Silence
	}
	return uint8(m.smoothed + 0.5)
}

// Due reports whether a level report should go out at now (a state change not reported yet,
// Every while speaking, Idle while quiet) and, if so, counts it as sent.
func (m *Meter) Due(now time.Time) bool {
	if !m.started {
		return false
	}
	every := m.cfg.Idle
	if m.speaking {
		every = m.cfg.Every
	}
	if !m.dirty && !m.reported.IsZero() && now.Sub(m.reported) < every {
		return false
	}
	m.dirty, m.reported = false, now
	return true
}
