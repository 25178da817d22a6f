package signal

import (
	"github.com/pion/rtcp"

	"github.com/jetmedia/jetmedia/egress/forward"
)

// subTrack returns the forward-fed pion track that delivers spec to the client (one
// subscription per track per node, as for WHEP viewers). A keyframe is requested when it binds
// and for the client's PLI and FIR (the publisher's side throttles).
func (c *conn) subTrack(spec TrackSpec) *forward.Track {
	t := &forward.Track{
		Hub: c.h.cfg.Hub, Room: c.s.Room, TrackID: spec.Track, Stream: spec.Peer,
		MediaKind: spec.Kind, Codec: spec.Codec, Fmtp: spec.FmtpLine,
	}
	t.OnKeyframeRequest = func() { c.requestKeyframe(spec.Track) }
	t.OnBound = func() {
		c.s.OnClose(t.Detach)
		if spec.Kind == "video" {
			c.requestKeyframe(spec.Track)
		}
	}
	return t
}

func (c *conn) requestKeyframe(track string) {
	if pli, err := (&rtcp.PictureLossIndication{}).Marshal(); err == nil {
		_ = c.h.cfg.Bus.SendFeedback(c.s.Room, track, pli)
	}
}
