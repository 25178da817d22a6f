package sip

import (
	"time"

	"github.com/jetmedia/jetmedia/events"
	"github.com/jetmedia/jetmedia/pipeline/rtc"
)

// Role is the role SIP callers have in their room: they publish their voice (and hear the
// room's mix); peer.joined.v1 knows publisher and viewer.
const Role = "publisher"

// Output is what the shell must do after an input (see rtc.Output).
type Output = rtc.Output

// TrackInfo describes the caller's track (rtc.TrackInfo).
type TrackInfo = rtc.TrackInfo

// Timers of a call. Zero values take the defaults.
type Timers struct {
	// Ack ends a call whose 200 OK is never acknowledged (RFC 3261 §13.3.1.4: 64×T1, 32 s).
	Ack time.Duration
	// Media ends a call that sends no RTP for this long while not on hold (30 s).
	Media time.Duration
	// Session is the session interval granted (RFC 4028; 1800 s): a call that asked for
	// session timers and is not refreshed within it ends (reason timeout).
	Session time.Duration
	// DTMFRate and DTMFBurst bound the key presses recorded (10 a second, bursts of 20):
	// each is an event in the room's log.
	DTMFRate  float64
	DTMFBurst float64
}

func (t Timers) withDefaults() Timers {
	if t.Ack <= 0 {
		t.Ack = 32 * time.Second
	}
	if t.Media <= 0 {
		t.Media = 30 * time.Second
	}
	if t.Session <= 0 {
		t.Session = 1800 * time.Second
	}
	if t.DTMFRate <= 0 {
		t.DTMFRate = 10
	}
	if t.DTMFBurst <= 0 {
		t.DTMFBurst = 20
	}
	return t
}

// Core is the sans-IO state machine of one SIP call: the shared lifecycle (join, leave,
// close reasons) plus the caller's track, hold, the media and session timers, and its key
// presses. Inputs carry now; nothing here reads a clock or touches a socket.
type Core struct {
	*rtc.Lifecycle
	t         Timers
	tracks    rtc.PublishedTracks
	held      bool
	lastMedia time.Time
	// refreshBy is when the session timer expires; zero when the caller did not ask for one.
	refreshBy time.Time
	tokens    float64
	tokensAt  time.Time
	// DroppedDTMF counts key presses over the rate limit (logged by the shell, not recorded).
	DroppedDTMF int
}

// NewCore returns the core of a new call; peer's Transport and Role are set here.
func NewCore(peer rtc.Peer, t Timers) *Core {
	peer.Transport, peer.Role = events.TransportSIP, Role
	c := &Core{t: t.withDefaults()}
	c.tokens = c.t.DTMFBurst
	c.Lifecycle = rtc.NewLifecycle(rtc.Timeouts{Connect: c.t.Ack}, peer, c.ending)
	return c
}

// Invited: the INVITE is authorised and its offer acceptable; the 200 OK goes out next. The
// peer joins now (the answer is only sent once the join is recorded) and waits for the ACK.
// sessionTimer is the caller's Session-Expires (0: none asked).
func (c *Core) Invited(now time.Time, remoteAddr, userAgent string, held bool, sessionTimer time.Duration) Output {
	out := c.Answered(now, remoteAddr, userAgent)
	c.held, c.lastMedia = held, now
	c.refreshed(now, sessionTimer)
	return out
}

// Acked: the caller acknowledged the 200 OK; media flows.
func (c *Core) Acked(now time.Time) Output {
	c.lastMedia = now
	return c.Connected(now)
}

// TrackStarted: the caller's audio track is about to be published.
func (c *Core) TrackStarted(_ time.Time, t TrackInfo) Output {
	if c.Closed() {
		return Output{}
	}
	c.tracks = append(c.tracks, t.Track)
	return Output{Events: []events.Payload{t.Published(c.Peer().ID)}}
}

// Media: an RTP packet came from the caller.
func (c *Core) Media(now time.Time) { c.lastMedia = now }

// Reinvited: a re-INVITE or UPDATE arrived and was answered: it refreshes the session timer
// and may put the call on or off hold. It records nothing (hold is not a room fact yet).
func (c *Core) Reinvited(now time.Time, held bool, sessionTimer time.Duration) Output {
	if c.Closed() {
		return Output{}
	}
	c.held, c.lastMedia = held, now
	c.refreshed(now, sessionTimer)
	return Output{}
}

func (c *Core) refreshed(now time.Time, interval time.Duration) {
	if interval > 0 {
		c.refreshBy = now.Add(min(interval, c.t.Session))
	}
}

// Held reports whether the caller has put the call on hold.
func (c *Core) Held() bool { return c.held }

// Digit: the caller pressed a key. It is recorded unless the caller presses faster than the
// DTMF rate allows.
func (c *Core) Digit(now time.Time, p Press) Output {
	if c.Closed() || c.State() != rtc.StateConnected {
		return Output{}
	}
	if !c.tokensAt.IsZero() {
		c.tokens = min(c.t.DTMFBurst, c.tokens+now.Sub(c.tokensAt).Seconds()*c.t.DTMFRate)
	}
	c.tokensAt = now
	if c.tokens < 1 {
		c.DroppedDTMF++
		return Output{}
	}
	c.tokens--
	return Output{Events: []events.Payload{events.DTMFReceived{Peer: c.Peer().ID, Digit: p.Digit, DurationMS: p.DurationMS}}}
}

// Bye: the caller hung up (BYE, or CANCEL before the answer): reason closed.
func (c *Core) Bye(now time.Time) Output { return c.Deleted(now) }

// Tick: the lifecycle's timers (ACK), then the media timeout (disconnected) and the session
// timer (timeout).
func (c *Core) Tick(now time.Time) Output {
	if out := c.Lifecycle.Tick(now); out.Close != "" {
		return out
	}
	if c.State() != rtc.StateConnected {
		return Output{}
	}
	if !c.held && now.Sub(c.lastMedia) >= c.t.Media {
		return c.Close(now, rtc.ReasonDisconnected)
	}
	if !c.refreshBy.IsZero() && !now.Before(c.refreshBy) {
		return c.Close(now, rtc.ReasonTimeout)
	}
	return Output{}
}

// ending unpublishes the caller's track before the peer leaves.
func (c *Core) ending() []events.Payload { return c.tracks.Unpublished(c.Peer().ID) }
