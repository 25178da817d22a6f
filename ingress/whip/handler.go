package whip

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

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
	// Publishers, when set, makes the sessions' PeerConnections (*rtc.Edge: with its fast
	// ingest, when on); nil: HTTPConfig.API's.
	Publishers Publishers
}

// Publishers makes a publishing session's PeerConnection and, when the edge takes its RTP
// itself, the FastIngest that does (nil otherwise); *rtc.Edge is one.
type Publishers interface {
	NewPublisher() (*webrtc.PeerConnection, *rtc.FastIngest, error)
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
	p := &publisher{h: h, core: NewCore(h.cfg.Timeouts, h.ep.Peer(o)), keys: rtc.Keyframes{Sent: &h.plis},
		simulcast: rtc.SimulcastLayers(o.Parsed), tracks: map[*webrtc.RTPReceiver]*TrackInfo{}}
	if h.cfg.Publishers != nil {
		if o.PC, p.fast, err = h.cfg.Publishers.NewPublisher(); err != nil {
			return fmt.Errorf("whip: %w", err)
		}
	}
	return h.ep.Start(w, o, p.core, p.keys.Request, func(s *rtc.Session) {
		s.OnClose(p.fast.Close)
		s.PC.OnTrack(func(tr *webrtc.TrackRemote, rcv *webrtc.RTPReceiver) { p.forward(s, tr, rcv) })
	}, nil)
}

// publisher is the shell state of one WHIP session beyond the generic Session.
type publisher struct {
	h    *Handler
	core *Core
	keys rtc.Keyframes
	// simulcast are the offer's layers by mid; tracks the published tracks by receiver (a
	// simulcast m-line's layers share one receiver and are one track).
	simulcast map[string][]string
	// fast takes the session's RTP off the edge's socket (nil: pion's path only).
	fast   *rtc.FastIngest
	mu     sync.Mutex
	tracks map[*webrtc.RTPReceiver]*TrackInfo
}

// forward runs on pion's OnTrack goroutine for the life of the track (one per simulcast
// layer): it records the track at its first layer and moves each layer's RTP onto the
// layer's media subject unchanged.
func (p *publisher) forward(s *rtc.Session, tr *webrtc.TrackRemote, rcv *webrtc.RTPReceiver) {
	codec := tr.Codec()
	var src rtc.RTPReader = tr
	if tr.RID() != "" { // pion names a layer's codec only after its first packet is read
		codec, src = rtc.PeekCodec(tr, peekCodecWait)
	}
	info, first := p.track(s, tr, rcv, codec)
	layer := tr.RID()
	if layer == "" {
		layer = rtc.SingleLayer
	} else if !slices.Contains(info.Layers, layer) {
		s.Log.Warn("simulcast layer not in the offer, ignored", "track", info.Track, "rid", layer)
		return
	}
	p.keys.Add(info.Track, layer, tr.SSRC())
	if first {
		reg := p.h.cfg.Sessions
		sub, err := p.h.cfg.Bus.SubscribeFeedback(s.Room, info.Track, func(layer string, data []byte) {
			if rtc.IsKeyframeRequest(data) {
				now, key := reg.Now(), rtc.LayerKey(info.Track, layer)
				s.Step(func(rtc.Core) Output { return p.core.KeyframeRequested(now, key) })
			}
		})
		if err != nil {
			s.Log.Error("feedback subscription failed", "track", info.Track, "err", err)
		} else {
			s.OnClose(func() { _ = sub.Unsubscribe() })
		}
		now := reg.Now()
		s.Step(func(rtc.Core) Output { return p.core.TrackStarted(now, info) })
		s.Log.Debug("track published", "track", info.Track, "kind", info.Kind, "codec", info.Codec, "layers", info.Layers)
	} else {
		// A later layer: its first keyframe may have gone before anyone listened.
		now, key := p.h.cfg.Sessions.Now(), rtc.LayerKey(info.Track, layer)
		s.Step(func(rtc.Core) Output { return p.core.KeyframeRequested(now, key) })
	}
	var dst rtc.RTPSender = p.h.cfg.Bus.Sender(s.Room, info.Track, layer)
	if tr.Kind() == webrtc.RTPCodecTypeAudio {
		dst = p.h.cfg.Levels.Tap(s, info.Track, rtc.AudioLevelID(rcv.GetParameters()), dst)
	}
	rtc.EndReadsOnClose(s, tr, rcv)
	p.h.cfg.Sessions.Go(func() { rtc.ReadPublisherRTCP(rcv, tr.RID()) })
	dst, err := p.fast.Publish(s.PC, tr.SSRC(), dst, nil, &p.h.rtp)
	if err != nil && !errors.Is(err, rtc.ErrSessionClosed) {
		s.Log.Warn("layer read through pion: no fast ingest", "track", info.Track, "layer", layer, "err", err)
	}
	rtc.ReadRTP(src, dst, nil, &p.h.rtp) // what pion read before, and what the fast path leaves
}

// peekCodecWait bounds the wait for a simulcast layer's first packet, which names its codec
// (pion fires OnTrack for a layer on its first packet, so the wait is normally none).
const peekCodecWait = 2 * time.Second

// track returns the published track tr belongs to, and whether tr is its first layer.
func (p *publisher) track(s *rtc.Session, tr *webrtc.TrackRemote, rcv *webrtc.RTPReceiver, codec webrtc.RTPCodecParameters) (TrackInfo, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if info, ok := p.tracks[rcv]; ok {
		return *info, false
	}
	info := &TrackInfo{
		Track: events.NewID(), Kind: tr.Kind().String(), Codec: codec.MimeType,
		ClockRate: codec.ClockRate, Channels: codec.Channels, Fmtp: codec.SDPFmtpLine,
	}
	if tr.RID() != "" {
		info.Layers = p.layersOf(s, rcv, tr.RID())
	}
	p.tracks[rcv] = info
	return *info, true
}

// layersOf are the simulcast layers the offer announced for rcv's m-line ([rid] when the
// offer's m-line cannot be found).
func (p *publisher) layersOf(s *rtc.Session, rcv *webrtc.RTPReceiver, rid string) []string {
	for _, t := range s.PC.GetTransceivers() {
		if t.Receiver() == rcv {
			if l := p.simulcast[t.Mid()]; len(l) > 0 {
				return l
			}
		}
	}
	return []string{rid}
}
