package rtc

import (
	"encoding/json"
	"strings"
	"time"

	"github.com/jetmedia/jetmedia/events"
)

// State of a WebRTC session.
type State int

const (
	StateNew        State = iota // created; no media negotiated yet
	StateConnecting              // answered (or negotiated), waiting for ICE/DTLS
	StateConnected               // media can flow
	StateClosed                  // ended; every later input is ignored
)

func (s State) String() string {
	return [...]string{"new", "connecting", "connected", "closed"}[s]
}

// Reason is why a session ended: the peer.left reason it records (events.PeerLeft.Reason).
type Reason string

// The reasons a session ends for.
const (
	// ReasonClosed: the client ended it (WHIP/WHEP DELETE, the room SDK's leave).
	ReasonClosed Reason = "closed"
	// ReasonDisconnected: ICE/DTLS failed, connectivity did not come back within the
	// disconnect grace period, or a room socket dropped without a resume.
	ReasonDisconnected Reason = "disconnected"
	// ReasonTimeout: the session never connected within the connect timeout.
	ReasonTimeout Reason = "timeout"
	// ReasonShutdown: the node is stopping.
	ReasonShutdown Reason = "shutdown"
	// ReasonKicked: the node removed the peer (a client that kept flooding past its rate
	// limits, an operator).
	ReasonKicked Reason = "kicked"
	// ReasonUnpublished: every track a viewer played was unpublished (its publisher left, or
	// its node was lost), and a WHEP session cannot take other tracks.
	ReasonUnpublished Reason = events.ReasonUnpublished
	// ReasonEndedInLog: the log ended the session already (a surviving node took this one for
	// lost and wrote its end); it ends here too, recording nothing more.
	ReasonEndedInLog Reason = "ended_in_log"
)

// Output is what a session core asks its shell to do after an input: append Events in order,
// request a keyframe of each track in PLI, end the session when Close names a reason.
type Output struct {
	Events []events.Payload
	PLI    []string
	// Close is why the session ends now; "" while it goes on.
	Close Reason
}

// String is what the output asks, for people and golden transcripts: " close=<reason>" and
// " pli=<track>" on the first line, then one line per event with its JSON.
func (o Output) String() string {
	var b strings.Builder
	if o.Close != "" {
		b.WriteString(" close=" + string(o.Close))
	}
	for _, p := range o.PLI {
		b.WriteString(" pli=" + p)
	}
	for _, p := range o.Events {
		data, err := json.Marshal(p)
		if err != nil {
			data = []byte(err.Error())
		}
		b.WriteString("\n        event " + p.EventType() + " " + string(data))
	}
	return b.String()
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

// Peer is who a session is in its room, as its peer.joined event records it.
type Peer struct {
	ID        string
	Node      string
	Transport string
	Role      string
	Identity  string
	Name      string
}

// Lifecycle is the sans-IO session lifecycle every WebRTC transport composes (WHIP, WHEP and
// room sessions embed it): the join and the leave, the states, the connect timeout, the
// disconnect grace period, keyframe-request throttling and the close reasons. Transports add
// what differs (tracks published, subscriptions, signalling) around it; the ending hook gives
// the events that undo what the transport recorded, which precede the peer.left. Inputs carry
// now; nothing here reads a clock.
type Lifecycle struct {
	peer    Peer
	t       Timeouts
	ending  func() []events.Payload
	state   State
	since   time.Time
	discon  bool
	joined  bool
	lastPLI map[string]time.Time
}

// NewLifecycle returns the lifecycle of peer's session in StateNew. ending (nil: nothing)
// returns the transport's closing events when the session ends after its join was recorded.
func NewLifecycle(t Timeouts, peer Peer, ending func() []events.Payload) *Lifecycle {
	return &Lifecycle{peer: peer, t: t.withDefaults(), ending: ending, lastPLI: map[string]time.Time{}}
}

// State is the current state.
func (l *Lifecycle) State() State { return l.state }

// Closed reports whether the session has ended.
func (l *Lifecycle) Closed() bool { return l.state == StateClosed }

// Peer is who the session is.
func (l *Lifecycle) Peer() Peer { return l.peer }

// Joined: the session is accepted (a room join); its peer.joined goes to the log. Media is
// not negotiated yet, so no connect timeout runs (see Negotiating).
func (l *Lifecycle) Joined(_ time.Time, remoteAddr, userAgent, metadata string) Output {
	if l.joined || l.state == StateClosed {
		return Output{}
	}
	l.joined = true
	p := l.peer
	return Output{Events: []events.Payload{events.PeerJoined{
		Peer: p.ID, Transport: p.Transport, Role: p.Role, Node: p.Node, RemoteAddr: remoteAddr,
		UserAgent: userAgent, Identity: p.Identity, Name: p.Name, Metadata: metadata,
	}}}
}

// Negotiating: an offer or answer went out; the connect timeout starts unless it runs already.
func (l *Lifecycle) Negotiating(now time.Time) {
	if l.state == StateNew {
		l.state, l.since = StateConnecting, now
	}
}

// Answered: a WHIP or WHEP offer was accepted and answered: the peer joins the room and the
// connect timeout starts. A second call does nothing.
func (l *Lifecycle) Answered(now time.Time, remoteAddr, userAgent string) Output {
	if l.state != StateNew || l.joined {
		return Output{}
	}
	out := l.Joined(now, remoteAddr, userAgent, "")
	l.Negotiating(now)
	return out
}

// Connected: ICE and DTLS are up (again).
func (l *Lifecycle) Connected(now time.Time) Output {
	if l.state == StateConnecting || l.state == StateConnected {
		l.state, l.since, l.discon = StateConnected, now, false
	}
	return Output{}
}

// Disconnected: connectivity was lost; it may come back within the grace period.
func (l *Lifecycle) Disconnected(now time.Time) Output {
	if l.state == StateConnected && !l.discon {
		l.discon, l.since = true, now
	}
	return Output{}
}

// Failed: the connection failed or was closed by the remote side.
func (l *Lifecycle) Failed(now time.Time) Output { return l.Close(now, ReasonDisconnected) }

// Deleted: the client ended the session (DELETE on its URL).
func (l *Lifecycle) Deleted(now time.Time) Output { return l.Close(now, ReasonClosed) }

// Shutdown: the node is stopping.
func (l *Lifecycle) Shutdown(now time.Time) Output { return l.Close(now, ReasonShutdown) }

// Tick lets the lifecycle act on time: the connect timeout and the disconnect grace.
func (l *Lifecycle) Tick(now time.Time) Output {
	if reason := l.Expired(now); reason != "" {
		return l.Close(now, reason)
	}
	return Output{}
}

// Expired is the reason the session must end at now, or "".
func (l *Lifecycle) Expired(now time.Time) Reason {
	switch {
	case l.state == StateConnecting && now.Sub(l.since) >= l.t.Connect:
		return ReasonTimeout
	case l.state == StateConnected && l.discon && now.Sub(l.since) >= l.t.DisconnectGrace:
		return ReasonDisconnected
	}
	return ""
}

// Close ends the session for reason: once joined, the transport's ending events then the
// peer.left; always Close set. A second call returns nothing.
func (l *Lifecycle) Close(_ time.Time, reason Reason) Output {
	if l.state == StateClosed {
		return Output{}
	}
	l.state = StateClosed
	out := Output{Close: reason}
	if !l.joined {
		return out
	}
	if l.ending != nil {
		out.Events = l.ending()
	}
	out.Events = append(out.Events, events.NewPeerLeft(l.peer.ID, string(reason)))
	return out
}

// EndedInLog: the log has ended the session already (its peer.left is there, written by a
// node that took this one for lost): the session ends without recording anything, since
// what it would record is in the log.
func (l *Lifecycle) EndedInLog(time.Time) Output {
	if l.state == StateClosed {
		return Output{}
	}
	l.state = StateClosed
	return Output{Close: ReasonEndedInLog}
}

// KeyframeRequested: someone wants a keyframe of track (a viewer's PLI or FIR, a new viewer,
// a new track). Requests are throttled into one PLI per track per PLIInterval.
func (l *Lifecycle) KeyframeRequested(now time.Time, track string) Output {
	if l.AllowPLI(now, track) {
		return Output{PLI: []string{track}}
	}
	return Output{}
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
