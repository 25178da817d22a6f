package signal

import (
	"fmt"
	"strings"
	"sync"

	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"

	"github.com/jetmedia/jetmedia/egress/forward"
)

// subTrack is a pion TrackLocal fed by the node's fan-out of a published track (as WHEP's
// viewer tracks are): one subscription per track per node whatever the number of clients.
type subTrack struct {
	c    *conn
	spec TrackSpec

	mu     sync.Mutex
	out    *forward.Output
	fan    *forward.Fanout
	detach func()
}

func (t *subTrack) ID() string       { return t.spec.Track }
func (t *subTrack) RID() string      { return "" }
func (t *subTrack) StreamID() string { return t.spec.Peer }
func (t *subTrack) Kind() webrtc.RTPCodecType {
	if t.spec.Kind == "audio" {
		return webrtc.RTPCodecTypeAudio
	}
	return webrtc.RTPCodecTypeVideo
}

// Bind: the client's transport is up; packets of the track flow to it from now on, starting
// with a keyframe request toward the publisher.
func (t *subTrack) Bind(ctx webrtc.TrackLocalContext) (webrtc.RTPCodecParameters, error) {
	codec, ok := matchCodec(t.spec, ctx.CodecParameters())
	if !ok {
		return webrtc.RTPCodecParameters{}, fmt.Errorf("signal: client cannot receive %s: %w", t.spec.Codec, webrtc.ErrUnsupportedCodec)
	}
	out := forward.NewOutput(uint32(ctx.SSRC()), uint8(codec.PayloadType), ctx.WriteStream())
	fan, detach, err := t.c.h.cfg.Hub.Attach(t.c.s.Room, t.spec.Track, out)
	if err != nil {
		return webrtc.RTPCodecParameters{}, err
	}
	t.mu.Lock()
	t.out, t.fan, t.detach = out, fan, detach
	t.mu.Unlock()
	t.c.s.OnClose(t.unbind)
	if t.spec.Kind == "video" {
		t.requestKeyframe()
	}
	return codec, nil
}

func (t *subTrack) Unbind(webrtc.TrackLocalContext) error {
	t.unbind()
	return nil
}

func (t *subTrack) unbind() {
	t.mu.Lock()
	detach := t.detach
	t.detach, t.out, t.fan = nil, nil, nil
	t.mu.Unlock()
	if detach != nil {
		detach()
	}
}

func (t *subTrack) requestKeyframe() {
	if pli, err := (&rtcp.PictureLossIndication{}).Marshal(); err == nil {
		_ = t.c.h.cfg.Bus.SendFeedback(t.c.s.Room, t.spec.Track, pli)
	}
}

// readRTCP answers the client's feedback: NACKs from the node's cache, PLI and FIR by asking
// the publisher (whose side throttles). It ends when the sender stops.
func (t *subTrack) readRTCP(sender *webrtc.RTPSender) {
	lost := make([]uint16, 0, 64)
	for {
		pkts, _, err := sender.ReadRTCP()
		if err != nil {
			return
		}
		for _, p := range pkts {
			switch p := p.(type) {
			case *rtcp.TransportLayerNack:
				lost = lost[:0]
				for _, pair := range p.Nacks {
					pair.Range(func(seq uint16) bool { lost = append(lost, seq); return true })
				}
				t.mu.Lock()
				fan, out := t.fan, t.out
				t.mu.Unlock()
				if fan != nil {
					fan.Retransmit(out, lost)
				}
			case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest:
				t.requestKeyframe()
			}
		}
	}
}

// matchCodec picks the client's negotiated codec for the published one.
func matchCodec(spec TrackSpec, offered []webrtc.RTPCodecParameters) (webrtc.RTPCodecParameters, bool) {
	var fallback *webrtc.RTPCodecParameters
	for i, c := range offered {
		if !strings.EqualFold(c.MimeType, spec.Codec) {
			continue
		}
		if c.SDPFmtpLine == spec.FmtpLine {
			return c, true
		}
		if fallback == nil {
			fallback = &offered[i]
		}
	}
	if fallback != nil {
		return *fallback, true
	}
	return webrtc.RTPCodecParameters{}, false
}
