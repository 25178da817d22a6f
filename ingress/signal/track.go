package signal

import (
	"github.com/pion/rtcp"
)

// subTrack returns the track that delivers spec to the client (one subscription per track per
// node, as for WHEP viewers). A keyframe is requested when it binds and for the client's PLI
// and FIR (the publisher's side throttles).
func (c *conn) subTrack(spec TrackSpec) DeliveredTrack {
	var t DeliveredTrack
	t = c.h.cfg.Deliver(c.s.Room, spec, func() {
		c.s.OnClose(t.Detach)
		if spec.Kind == "video" {
			c.requestKeyframe(spec.Track)
		}
	}, func() { c.requestKeyframe(spec.Track) })
	return t
}

func (c *conn) requestKeyframe(track string) {
	if pli, err := (&rtcp.PictureLossIndication{}).Marshal(); err == nil {
		_ = c.h.cfg.Bus.SendFeedback(c.s.Room, track, pli)
	}
}
