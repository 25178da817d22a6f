package whep

import (
	"time"

	"github.com/jetmedia/jetmedia/events"
	"github.com/jetmedia/jetmedia/pipeline/rtc"
)

// Output is what the shell must do after an input (see rtc.Output).
type Output = rtc.Output

// Role is the role WHEP peers have in their room.
const Role = "viewer"

// Core is the sans-IO state machine of one WHEP session: the shared lifecycle (join, leave,
// timeouts, keyframe throttling) plus the subscriptions to one publisher's tracks.
type Core struct {
	*rtc.Lifecycle
	publisher string
	tracks    []string
	gone      map[string]bool // tracks unpublished
}

// NewCore returns the core of a viewer playing tracks of publisher; peer's Transport and Role
// are set here.
func NewCore(t rtc.Timeouts, peer rtc.Peer, publisher string, tracks []string) *Core {
	peer.Transport, peer.Role = events.TransportWHEP, Role
	c := &Core{publisher: publisher, tracks: tracks}
	c.Lifecycle = rtc.NewLifecycle(t, peer, c.ending)
	return c
}

// Tracks are the tracks the viewer plays (fixed when the core is made: safe to read outside
// the session's lock).
func (c *Core) Tracks() []string { return c.tracks }

// Answered: the viewer is in the room and subscribed to the tracks.
func (c *Core) Answered(now time.Time, remoteAddr, userAgent string) Output {
	out := c.Lifecycle.Answered(now, remoteAddr, userAgent)
	if len(out.Events) == 0 {
		return out
	}
	for _, t := range c.tracks {
		out.Events = append(out.Events, events.SubscriptionStarted{Peer: c.Peer().ID, Track: t, Publisher: c.publisher})
	}
	return out
}

// Bound: media for track (a rtc.LayerKey: the simulcast layer it starts on) starts flowing
// to the viewer. A video keyframe is requested at once so the viewer sees a picture without
// waiting for the publisher's next periodic one.
func (c *Core) Bound(now time.Time, track string, video bool) Output {
	if !video {
		return Output{}
	}
	return c.KeyframeRequested(now, track)
}

// Unpublished: track was unpublished. Once none of the tracks the viewer plays is left, the
// session ends (WHEP cannot add other tracks to it).
func (c *Core) Unpublished(now time.Time, track string) Output {
	if c.gone == nil {
		c.gone = map[string]bool{}
	}
	for _, t := range c.tracks {
		if t == track {
			c.gone[track] = true
		}
	}
	if len(c.gone) < len(c.tracks) {
		return Output{}
	}
	return c.Close(now, rtc.ReasonUnpublished)
}

// ending ends every subscription, in order, before the peer leaves.
func (c *Core) ending() []events.Payload {
	out := make([]events.Payload, 0, len(c.tracks)+1)
	for _, t := range c.tracks {
		out = append(out, events.SubscriptionEnded{Peer: c.Peer().ID, Track: t})
	}
	return out
}
