package whip

import (
	"time"

	"github.com/jetmedia/jetmedia/events"
	"github.com/jetmedia/jetmedia/pipeline/rtc"
)

// TrackInfo describes a track the publisher started sending.
type TrackInfo struct {
	Track     string
	Kind      string
	Codec     string
	ClockRate uint32
	Channels  uint16
	Fmtp      string
}

// Output is what the shell must do after an input (see rtc.Output).
type Output = rtc.Output

// Core is the sans-IO state machine of one WHIP session.
type Core struct {
	lc             rtc.Lifecycle
	peer           string
	node           string
	identity, name string
	tracks         []string
}

// NewCore returns the core of a new session of peer on node.
func NewCore(t rtc.Timeouts, peer, node string) *Core {
	return &Core{lc: rtc.NewLifecycle(t), peer: peer, node: node}
}

// SetIdentity records the token identity and display name that opened the session, for its
// peer.joined event. Call it before Answered.
func (c *Core) SetIdentity(identity, name string) { c.identity, c.name = identity, name }

// State is the session's current state.
func (c *Core) State() rtc.State { return c.lc.State() }

// Tracks lists the tracks published so far, in order.
func (c *Core) Tracks() []string { return c.tracks }

// Answered: the offer was accepted and answered; the peer is in the room.
func (c *Core) Answered(now time.Time, remoteAddr, userAgent string) Output {
	if !c.lc.Answer(now) {
		return Output{}
	}
	return Output{Events: []events.Payload{events.PeerJoined{
		Peer: c.peer, Transport: events.TransportWHIP, Role: "publisher", Node: c.node,
		RemoteAddr: remoteAddr, UserAgent: userAgent, Identity: c.identity, Name: c.name,
	}}}
}

// Connected: ICE and DTLS are up (again).
func (c *Core) Connected(now time.Time) Output { c.lc.Connected(now); return Output{} }

// Disconnected: connectivity was lost; it may come back within the grace period.
func (c *Core) Disconnected(now time.Time) Output { c.lc.Disconnected(now); return Output{} }

// Failed: the connection failed or was closed by the remote side.
func (c *Core) Failed(time.Time) Output { return c.close("disconnected") }

// Deleted: the client sent DELETE on the session.
func (c *Core) Deleted(time.Time) Output { return c.close("closed") }

// Shutdown: the node is stopping.
func (c *Core) Shutdown(time.Time) Output { return c.close("shutdown") }

// Tick lets the core act on time: connect timeouts and disconnect grace.
func (c *Core) Tick(now time.Time) Output {
	if reason := c.lc.Expired(now); reason != "" {
		return c.close(reason)
	}
	return Output{}
}

// TrackStarted: the first RTP of a new track arrived.
func (c *Core) TrackStarted(now time.Time, t TrackInfo) Output {
	if c.lc.State() == rtc.StateClosed {
		return Output{}
	}
	c.tracks = append(c.tracks, t.Track)
	out := Output{Events: []events.Payload{events.TrackPublished{
		Peer: c.peer, Track: t.Track, Kind: t.Kind, Codec: t.Codec, ClockRate: t.ClockRate,
		Channels: t.Channels, FmtpLine: t.Fmtp, Layers: []string{"0"},
	}}}
	// Viewers that asked before the track existed need a keyframe too.
	if t.Kind == "video" && c.lc.AllowPLI(now, t.Track) {
		out.PLI = []string{t.Track}
	}
	return out
}

// KeyframeRequested: a viewer somewhere asked for a keyframe of track. Requests from many
// viewers are throttled into one PLI per interval.
func (c *Core) KeyframeRequested(now time.Time, track string) Output {
	if c.lc.AllowPLI(now, track) {
		return Output{PLI: []string{track}}
	}
	return Output{}
}

func (c *Core) close(reason string) Output {
	wasOpen, answered := c.lc.Close()
	if !wasOpen {
		return Output{}
	}
	out := Output{Close: true}
	if !answered {
		return out
	}
	for _, t := range c.tracks {
		out.Events = append(out.Events, events.TrackUnpublished{Peer: c.peer, Track: t})
	}
	out.Events = append(out.Events, events.NewPeerLeft(c.peer, reason))
	return out
}
