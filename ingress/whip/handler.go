package whip

import (
	"errors"
	"net/http"
	"sync/atomic"

	"github.com/pion/webrtc/v4"

	"github.com/jetmedia/jetmedia/events"
	"github.com/jetmedia/jetmedia/pipeline/auth"
	"github.com/jetmedia/jetmedia/pipeline/mediabus"
	"github.com/jetmedia/jetmedia/pipeline/rtc"
)

// Config wires a Handler.
type Config struct {
	rtc.HTTPConfig
	Bus *mediabus.MediaBus
	// Levels reads the audio level of published audio tracks (nil: not read).
	Levels *rtc.Levels
}

// Handler serves WHIP. Its sessions live in the Registry, which owns their goroutines.
type Handler struct {
	cfg Config
	ep  *rtc.Endpoint

	// Counters of every session, bumped with atomics on the packet path; Stats reads them.
	rtp  rtc.RTPCounters
	plis atomic.Uint64
}

// Stats are a WHIP handler's counters since it started.
type Stats struct {
	// PacketsIn and BytesIn count RTP received from publishers (bytes: whole RTP packets).
	PacketsIn, BytesIn uint64
	// DroppedPublish counts packets received but not put on their media subject.
	DroppedPublish uint64
	// PLIsSent counts keyframe requests (PLI) sent to publishers.
	PLIsSent uint64
}

// Stats returns the handler's counters.
func (h *Handler) Stats() Stats {
	return Stats{PacketsIn: h.rtp.Packets.Load(), BytesIn: h.rtp.Bytes.Load(),
		DroppedPublish: h.rtp.Dropped.Load(), PLIsSent: h.plis.Load()}
}

// New returns a handler.
func New(cfg Config) (*Handler, error) {
	if cfg.Bus == nil {
		return nil, errors.New("whip: Bus is required")
	}
	ep, err := rtc.NewEndpoint(cfg.HTTPConfig, events.TransportWHIP, auth.Publish, "/")
	if err != nil {
		return nil, err
	}
	return &Handler{cfg: cfg, ep: ep}, nil
}

// Register adds the WHIP routes to mux: POST /whip/{room}, the session URL
// /whip/{room}/{session}.
func (h *Handler) Register(mux *http.ServeMux) { h.ep.Register(mux, h.publish, "/{room}") }

func (h *Handler) publish(w http.ResponseWriter, r *http.Request) error {
	o, err := h.ep.Accept(r)
	if err != nil {
		return err
	}
	if len(rtc.SendKinds(o.Parsed)) == 0 {
		return rtc.Errorf(http.StatusBadRequest, "WHIP offer sends no audio or video (every m-line is recvonly or inactive)")
	}
	p := &publisher{h: h, core: NewCore(h.cfg.Timeouts, h.ep.Peer(o)), keys: rtc.Keyframes{Sent: &h.plis}}
	return h.ep.Start(w, o, p.core, p.keys.Request, func(s *rtc.Session) {
		s.PC.OnTrack(func(tr *webrtc.TrackRemote, rc *webrtc.RTPReceiver) { p.forward(s, tr, rc) })
	}, nil)
}

// publisher is the shell state of one WHIP session beyond the generic Session.
type publisher struct {
	h    *Handler
	core *Core
	keys rtc.Keyframes
}

// forward runs on pion's OnTrack goroutine for the life of the track: it records the track
// and moves its RTP onto the track's media subject unchanged.
func (p *publisher) forward(s *rtc.Session, tr *webrtc.TrackRemote, rc *webrtc.RTPReceiver) {
	codec := tr.Codec()
	info := TrackInfo{
		Track: events.NewID(), Kind: tr.Kind().String(), Codec: codec.MimeType,
		ClockRate: codec.ClockRate, Channels: codec.Channels, Fmtp: codec.SDPFmtpLine,
	}
	reg := p.h.cfg.Sessions
	p.keys.Add(info.Track, tr.SSRC())
	sub, err := p.h.cfg.Bus.SubscribeFeedback(s.Room, info.Track, func(data []byte) {
		if rtc.IsKeyframeRequest(data) {
			now := reg.Now()
			s.Step(func(rtc.Core) Output { return p.core.KeyframeRequested(now, info.Track) })
		}
	})
	if err != nil {
		s.Log.Error("feedback subscription failed", "track", info.Track, "err", err)
	} else {
		s.OnClose(func() { _ = sub.Unsubscribe() })
	}
	now := reg.Now()
	s.Step(func(rtc.Core) Output { return p.core.TrackStarted(now, info) })
	s.Log.Debug("track published", "track", info.Track, "kind", info.Kind, "codec", info.Codec)
	var dst rtc.RTPSender = p.h.cfg.Bus.Sender(s.Room, info.Track, "0")
	if tr.Kind() == webrtc.RTPCodecTypeAudio {
		dst = p.h.cfg.Levels.Tap(s, info.Track, rtc.AudioLevelID(rc.GetParameters()), dst)
	}
	rtc.ReadRTP(tr, dst, nil, &p.h.rtp)
}
