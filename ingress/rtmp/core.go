package rtmp

import (
	"time"

	"github.com/jetmedia/jetmedia/events"
	"github.com/jetmedia/jetmedia/pipeline/rtc"
)

// Role is the role RTMP publishers have in their room.
const Role = "publisher"

// TrackInfo describes a track the publisher sends (rtc.TrackInfo).
type TrackInfo = rtc.TrackInfo

// Output is what the shell must do after an input (see rtc.Output).
type Output = rtc.Output

// Core is the sans-IO state machine of one RTMP publishing session: the shared lifecycle
// (join, leave, close reasons) plus the tracks the publisher sends. An RTMP session has no
// ICE: it is connected from its accepted publish until its TCP connection ends, so the
// connect timeout and disconnect grace never run.
type Core struct {
	*rtc.Lifecycle
	tracks rtc.PublishedTracks
}

// NewCore returns the core of a new RTMP session; peer's Transport and Role are set here.
func NewCore(peer rtc.Peer) *Core {
	peer.Transport, peer.Role = events.TransportRTMP, Role
	c := &Core{}
	c.Lifecycle = rtc.NewLifecycle(rtc.Timeouts{}, peer, c.ending)
	return c
}

// Tracks lists the tracks published so far, in order.
func (c *Core) Tracks() []string { return c.tracks }

// Published: the publish command was authorised and the stream's tracks are known. The peer
// joins and is connected at once (the TCP connection is the media path).
func (c *Core) Published(now time.Time, remoteAddr, encoder string) Output {
	out := c.Answered(now, remoteAddr, encoder)
	c.Connected(now)
	return out
}

// TrackStarted: a track of the stream is about to send RTP.
func (c *Core) TrackStarted(_ time.Time, t TrackInfo) Output {
	if c.Closed() || c.State() != rtc.StateConnected {
		return Output{}
	}
	c.tracks = append(c.tracks, t.Track)
	return Output{Events: []events.Payload{t.Published(c.Peer().ID)}}
}

// StreamDeleted: the publisher sent deleteStream, closeStream or FCUnpublish: reason closed.
func (c *Core) StreamDeleted(now time.Time) Output { return c.Deleted(now) }

// ConnectionLost: the TCP connection ended or stopped carrying data (read deadline), or the
// stream could not be read: reason disconnected.
func (c *Core) ConnectionLost(now time.Time) Output { return c.Failed(now) }

// ending unpublishes every track, in order, before the peer leaves.
func (c *Core) ending() []events.Payload {
	return c.tracks.Unpublished(c.Peer().ID)
}
