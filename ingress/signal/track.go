package signal

import "github.com/jetmedia/jetmedia/pipeline/rtc"

// subTrack returns the track that delivers spec to the client (one subscription per track per
// node, as for WHEP viewers). A keyframe is requested when a video track binds and for the
// client's PLI and FIR, through the core's throttle.
func (c *conn) subTrack(spec TrackSpec) DeliveredTrack {
	var t DeliveredTrack
	reg := c.h.cfg.Sessions
	keyframe := func(layer string) {
		now := reg.Now()
		key := rtc.LayerKey(spec.Track, layer)
		c.s.Step(func(rtc.Core) rtc.Output { return c.core.KeyframeRequested(now, key) })
	}
	t = c.h.cfg.Deliver(c.s.Room, spec, func(layer string) {
		c.s.OnClose(t.Detach)
		if spec.Kind == "video" {
			keyframe(layer)
		}
	}, keyframe)
	return t
}

// sendPLI is the session's OnPLI for a track or one of its layers (a rtc.LayerKey): a track
// the client publishes gets a PLI on its PeerConnection; a track it receives, a keyframe
// request toward its publisher's node.
func (c *conn) sendPLI(s *rtc.Session, key string) {
	if c.keys.Owns(key) {
		c.keys.Request(s, key)
		return
	}
	rtc.AskPublisher(c.h.cfg.Bus, s, key)
}
