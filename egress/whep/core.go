package whep

import (
	"time"

	"github.com/jetmedia/jetmedia/events"
	"github.com/jetmedia/jetmedia/pipeline/rtc"
)

// Output is what the shell must do after an input (see rtc.Output).
type Output = rtc.Output

// Core is the sans-IO state machine of one WHEP session.
type Core struct {
	lc             rtc.Lifecycle
	peer           string
	node           string
	identity, name string
	publisher      string
	tracks         []string
}

// NewCore returns the core of viewer peer on node, playing tracks of publisher.
func NewCore(t rtc.Timeouts, peer, node, publisher string, tracks []string) *Core {
	return &Core{lc: rtc.NewLifecycle(t), peer: peer, node: node, publisher: publisher, tracks: tracks}
}

// SetIdentity records the token identity and display name that opened the session, for its
// peer.joined event. Call it before Answered.
func (c *Core) SetIdentity(identity, name string) { c.identity, c.name = identity, name }

// State is the session's current state.
func (c *Core) State() rtc.State { return c.lc.State() }

// Answered: the viewer is in the room and subscribed to the tracks.
func (c *Core) Answered(now time.Time, remoteAddr, userAgent string) Output {
	if !c.lc.Answer(now) {
		return Output{}
	}
	out := Output{Events: []events.Payload{events.PeerJoined{
		Peer: c.peer, Transport: events.TransportWHEP, Role: "viewer", Node: c.node,
		RemoteAddr: remoteAddr, UserAgent: userAgent, Identity: c.identity, Name: c.name,
	}}}
	for _, t := range c.tracks {
		out.Events = append(out.Events, events.SubscriptionStarted{Peer: c.peer, Track: t, Publisher: c.publisher})
	}
	return out
}

// Bound: media for track starts flowing to the viewer. A keyframe is requested at once so the
// viewer sees a picture without waiting for the publisher's next periodic one.
func (c *Core) Bound(now time.Time, track string, video bool) Output {
	if video && c.lc.AllowPLI(now, track) {
		return Output{PLI: []string{track}}
	}
	return Output{}
}

// KeyframeRequested: the viewer sent a PLI or FIR for track.
func (c *Core) KeyframeRequested(now time.Time, track string) Output {
	if c.lc.AllowPLI(now, track) {
		return Output{PLI: []string{track}}
	}
	return Output{}
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
		out.Events = append(out.Events, events.SubscriptionEnded{Peer: c.peer, Track: t})
	}
	out.Events = append(out.Events, events.NewPeerLeft(c.peer, reason))
	return out
}
