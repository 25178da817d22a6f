package whip

import (
	"time"

	"github.com/jetmedia/jetmedia/events"
	"github.com/jetmedia/jetmedia/pipeline/rtc"
)

// TrackInfo describes a track the publisher started sending (rtc.TrackInfo).
type TrackInfo = rtc.TrackInfo

// Output is what the shell must do after an input (see rtc.Output).
type Output = rtc.Output

// Role is the role WHIP peers have in their room.
const Role = "publisher"

// Core is the sans-IO state machine of one WHIP session: the shared lifecycle (join, leave,
// timeouts, keyframe throttling) plus the tracks the publisher sends.
type Core struct {
	*rtc.Lifecycle
	tracks rtc.PublishedTracks
}

// NewCore returns the core of a new publishing session; peer's Transport and Role are set here.
func NewCore(t rtc.Timeouts, peer rtc.Peer) *Core {
	peer.Transport, peer.Role = events.TransportWHIP, Role
	c := &Core{}
	c.Lifecycle = rtc.NewLifecycle(t, peer, c.ending)
	return c
}

// Tracks lists the tracks published so far, in order.
func (c *Core) Tracks() []string { return c.tracks }

// TrackStarted: the first RTP of a new track arrived. A video track gets a keyframe request at
// once: viewers that asked before the track existed need one too.
func (c *Core) TrackStarted(now time.Time, t TrackInfo) Output {
	if c.Closed() {
		return Output{}
	}
	c.tracks = append(c.tracks, t.Track)
	var out Output
	if t.Kind == "video" {
		out = c.KeyframeRequested(now, t.Track)
	}
	out.Events = []events.Payload{t.Published(c.Peer().ID)}
	return out
}

// ending unpublishes every track, in order, before the peer leaves.
func (c *Core) ending() []events.Payload {
	return c.tracks.Unpublished(c.Peer().ID)
}
