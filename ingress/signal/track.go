package signal

import "github.com/jetmedia/jetmedia/pipeline/rtc"

// subTrack returns the track that delivers spec to the client (one subscription per track per
// node, as for WHEP viewers). A keyframe is requested when a video track binds and for the
// client's PLI and FIR, through the core's throttle.
func (c *conn) subTrack(spec TrackSpec) DeliveredTrack {
	var t DeliveredTrack
	reg := c.h.cfg.Sessions
	keyframe := func() {
		now := reg.Now()
		c.s.Step(func(rtc.Core) rtc.Output { return c.core.KeyframeRequested(now, spec.Track) })
	}
	t = c.h.cfg.Deliver(c.s.Room, spec, func() {
		c.s.OnClose(t.Detach)
		if spec.Kind == "video" {
			keyframe()
		}
	}, keyframe)
	return t
}

// sendPLI is the session's OnPLI: a track the client publishes gets a PLI on its
// PeerConnection; a track it receives, a keyframe request toward its publisher's node.
func (c *conn) sendPLI(s *rtc.Session, track string) {
	if c.keys.Owns(track) {
		c.keys.Request(s, track)
		return
	}
	rtc.AskPublisher(c.h.cfg.Bus, s, track)
}
