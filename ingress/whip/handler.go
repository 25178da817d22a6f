package whip

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"

	"github.com/jetmedia/jetmedia/events"
	"github.com/jetmedia/jetmedia/pipeline/auth"
	"github.com/jetmedia/jetmedia/pipeline/mediabus"
	"github.com/jetmedia/jetmedia/pipeline/rtc"
)

// Config wires a Handler.
type Config struct {
	API      *webrtc.API
	Sessions *rtc.Registry
	Bus      *mediabus.MediaBus
	// Auth checks bearer tokens: POST needs the publish grant for the room, PATCH and DELETE
	// the session owner's identity (or admin).
	Auth rtc.Authorizer
	// Prefix is the URL path the routes live under (default "/whip").
	Prefix   string
	Timeouts rtc.Timeouts
	Logger   *slog.Logger
}

// Handler serves WHIP. Its sessions live in the Registry, which owns their goroutines.
type Handler struct {
	cfg Config
	log *slog.Logger

	// Counters of every session, bumped with atomics on the packet path (no lock, no
	// allocation); Stats reads them.
	packetsIn, bytesIn, dropped, plis atomic.Uint64
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
	return Stats{PacketsIn: h.packetsIn.Load(), BytesIn: h.bytesIn.Load(),
		DroppedPublish: h.dropped.Load(), PLIsSent: h.plis.Load()}
}

// New returns a handler.
func New(cfg Config) (*Handler, error) {
	if cfg.API == nil || cfg.Sessions == nil || cfg.Bus == nil || cfg.Auth == nil {
		return nil, errors.New("whip: API, Sessions, Bus and Auth are required")
	}
	if cfg.Prefix == "" {
		cfg.Prefix = "/whip"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Handler{cfg: cfg, log: cfg.Logger.With("component", "whip")}, nil
}

// Register adds the WHIP routes to mux.
func (h *Handler) Register(mux *http.ServeMux) {
	p := h.cfg.Prefix
	mux.HandleFunc("POST "+p+"/{room}", h.post)
	mux.HandleFunc("OPTIONS "+p+"/{room}", options)
	mux.HandleFunc("DELETE "+p+"/{room}/{session}", h.cfg.Sessions.DeleteHandler(h.cfg.Auth, h.log, deleted))
	mux.HandleFunc("PATCH "+p+"/{room}/{session}", h.cfg.Sessions.PatchHandler(h.cfg.Auth, h.log))
	mux.HandleFunc("OPTIONS "+p+"/{room}/{session}", options)
}

func options(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Accept-Post", "application/sdp")
	w.Header().Set("Allow", "OPTIONS, POST, DELETE, PATCH")
	w.WriteHeader(http.StatusNoContent)
}

func (h *Handler) post(w http.ResponseWriter, r *http.Request) {
	if err := h.publish(w, r); err != nil {
		rtc.WriteError(w, r, h.log, err)
	}
}

func (h *Handler) publish(w http.ResponseWriter, r *http.Request) error {
	reg := h.cfg.Sessions
	room := r.PathValue("room")
	if !events.ValidID(room) {
		return rtc.Errorf(http.StatusBadRequest, "room %q is not a valid id (1-64 of A-Z a-z 0-9 _ -)", room)
	}
	claims, err := h.cfg.Auth.Authorize(r, room, auth.Publish, reg.Now())
	if err != nil {
		return rtc.AuthError(err)
	}
	offer, parsed, err := rtc.ReadOffer(r)
	if err != nil {
		return err
	}
	if len(rtc.SendKinds(parsed)) == 0 {
		return rtc.Errorf(http.StatusBadRequest, "WHIP offer sends no audio or video (every m-line is recvonly or inactive)")
	}
	if reg.Closing() {
		return rtc.Errorf(http.StatusServiceUnavailable, "server is shutting down")
	}
	pc, err := h.cfg.API.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return fmt.Errorf("whip: new peer connection: %w", err)
	}
	id := events.NewID()
	p := &publisher{h: h, core: NewCore(h.cfg.Timeouts, id, reg.Node()), ssrc: map[string]webrtc.SSRC{}}
	p.core.SetIdentity(claims.Identity, claims.Name)
	p.s = reg.NewSession(id, room, pc, p.core, h.log.With("room", room, "session", id, "identity", claims.Identity))
	p.s.Identity = claims.Identity
	p.s.OnPLI = p.sendPLI
	ok := false
	defer func() {
		if !ok {
			_ = pc.Close()
		}
	}()
	pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) { p.forward(tr) })
	answer, err := rtc.Answer(r.Context(), pc, offer, nil)
	if err != nil {
		return err
	}
	if err := reg.Add(p.s); err != nil {
		return err
	}
	now := reg.Now()
	if err := p.s.StepErr(func(rtc.Core) Output { return p.core.Answered(now, r.RemoteAddr, r.UserAgent()) }); err != nil {
		p.s.Step(func(rtc.Core) Output { return p.core.Shutdown(now) })
		return rtc.Errorf(http.StatusServiceUnavailable, "cannot record the session in the event log: %v", err)
	}
	ok = true
	p.s.Log.Info("publishing session started", "remote", r.RemoteAddr)
	rtc.WriteAnswer(w, h.cfg.Prefix+"/"+room+"/"+id, `"`+id+`"`, answer)
	return nil
}

// deleted is the core's input for a client DELETE.
func deleted(c rtc.Core, now time.Time) Output { return c.(*Core).Deleted(now) }

// publisher is the shell state of one WHIP session beyond the generic Session.
type publisher struct {
	h    *Handler
	s    *rtc.Session
	core *Core

	mu   sync.Mutex
	ssrc map[string]webrtc.SSRC
}

// sendPLI asks the publisher for a keyframe of track (called under the session lock).
func (p *publisher) sendPLI(track string) {
	p.mu.Lock()
	ssrc, ok := p.ssrc[track]
	p.mu.Unlock()
	if !ok {
		return
	}
	if err := p.s.PC.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: uint32(ssrc)}}); err != nil {
		p.s.Log.Debug("PLI not sent", "track", track, "err", err)
		return
	}
	p.h.plis.Add(1)
}

// forward runs on pion's OnTrack goroutine for the life of the track: it records the track
// and moves its RTP onto the track's media subject unchanged.
func (p *publisher) forward(tr *webrtc.TrackRemote) {
	codec := tr.Codec()
	info := TrackInfo{
		Track: events.NewID(), Kind: tr.Kind().String(), Codec: codec.MimeType,
		ClockRate: codec.ClockRate, Channels: codec.Channels, Fmtp: codec.SDPFmtpLine,
	}
	reg := p.h.cfg.Sessions
	p.mu.Lock()
	p.ssrc[info.Track] = tr.SSRC()
	p.mu.Unlock()
	sub, err := p.h.cfg.Bus.SubscribeFeedback(p.s.Room, info.Track, func(data []byte) {
		if rtc.IsKeyframeRequest(data) {
			now := reg.Now()
			p.s.Step(func(rtc.Core) Output { return p.core.KeyframeRequested(now, info.Track) })
		}
	})
	if err != nil {
		p.s.Log.Error("feedback subscription failed", "track", info.Track, "err", err)
	} else {
		p.s.OnClose(func() { _ = sub.Unsubscribe() })
	}
	now := reg.Now()
	if err := p.s.StepErr(func(rtc.Core) Output { return p.core.TrackStarted(now, info) }); err != nil {
		p.s.Log.Error("track not recorded", "track", info.Track, "err", err)
	}
	p.s.Log.Info("track published", "track", info.Track, "kind", info.Kind, "codec", info.Codec)
	sender := p.h.cfg.Bus.Sender(p.s.Room, info.Track, "0")
	buf := make([]byte, 1500)
	for {
		n, _, err := tr.Read(buf)
		if err != nil {
			return
		}
		p.h.packetsIn.Add(1)
		p.h.bytesIn.Add(uint64(n))
		if err := sender.Send(buf[:n]); err != nil {
			p.h.dropped.Add(1)
			p.s.Log.Debug("media publish failed", "track", info.Track, "err", err)
		}
	}
}
