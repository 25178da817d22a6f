package whep

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"

	"github.com/jetmedia/jetmedia/egress/forward"
	"github.com/jetmedia/jetmedia/events"
	"github.com/jetmedia/jetmedia/pipeline/auth"
	"github.com/jetmedia/jetmedia/pipeline/mediabus"
	"github.com/jetmedia/jetmedia/pipeline/rtc"
)

// TrackSpec is what a viewer needs to know of a published track.
type TrackSpec struct {
	Track     string
	Kind      string // "audio" or "video"
	Codec     string // MIME type
	ClockRate uint32
	Channels  uint16
	Fmtp      string
	// Since is when the track was published.
	Since time.Time
}

// StartGrace is how long after a publisher's latest track appeared a viewer that wants a kind
// the publisher does not send yet is asked to retry (409): a publisher's audio and video
// tracks start a few milliseconds apart, and WHEP cannot add a track to a session later.
const StartGrace = 2 * time.Second

// ErrNoPublisher means the room (or the peer asked for) publishes nothing yet.
var ErrNoPublisher = errors.New("whep: nothing published")

// ErrNoPeer means the peer asked for is not in the room.
var ErrNoPeer = errors.New("whep: no such peer")

// Catalog answers what a room publishes. peer "" means the room's current publisher.
type Catalog interface {
	Published(ctx context.Context, room, peer string) (publisher string, tracks []TrackSpec, err error)
}

// Config wires a Handler.
type Config struct {
	API      *webrtc.API
	Sessions *rtc.Registry
	Bus      *mediabus.MediaBus
	Hub      *forward.Hub
	Catalog  Catalog
	// Auth checks bearer tokens: POST needs the subscribe grant for the room, PATCH and
	// DELETE the session owner's identity (or admin).
	Auth rtc.Authorizer
	// Prefix is the URL path the routes live under (default "/whep").
	Prefix   string
	Timeouts rtc.Timeouts
	Logger   *slog.Logger
}

// Handler serves WHEP.
type Handler struct {
	cfg Config
	log *slog.Logger
}

// New returns a handler.
func New(cfg Config) (*Handler, error) {
	if cfg.API == nil || cfg.Sessions == nil || cfg.Bus == nil || cfg.Hub == nil || cfg.Catalog == nil || cfg.Auth == nil {
		return nil, errors.New("whep: API, Sessions, Bus, Hub, Catalog and Auth are required")
	}
	if cfg.Prefix == "" {
		cfg.Prefix = "/whep"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Handler{cfg: cfg, log: cfg.Logger.With("component", "whep")}, nil
}

// Register adds the WHEP routes to mux. The session URL is /whep/{room}/s/{session} so that it
// cannot be confused with /whep/{room}/{peer}.
func (h *Handler) Register(mux *http.ServeMux) {
	p := h.cfg.Prefix
	mux.HandleFunc("POST "+p+"/{room}", h.post)
	mux.HandleFunc("POST "+p+"/{room}/{peer}", h.post)
	mux.HandleFunc("OPTIONS "+p+"/{room}", options)
	mux.HandleFunc("OPTIONS "+p+"/{room}/{peer}", options)
	mux.HandleFunc("DELETE "+p+"/{room}/s/{session}", h.cfg.Sessions.DeleteHandler(h.cfg.Auth, h.log, deleted))
	mux.HandleFunc("PATCH "+p+"/{room}/s/{session}", h.cfg.Sessions.PatchHandler(h.cfg.Auth, h.log))
	mux.HandleFunc("OPTIONS "+p+"/{room}/s/{session}", options)
}

func options(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Accept-Post", "application/sdp")
	w.Header().Set("Allow", "OPTIONS, POST, DELETE, PATCH")
	w.WriteHeader(http.StatusNoContent)
}

func (h *Handler) post(w http.ResponseWriter, r *http.Request) {
	if err := h.play(w, r); err != nil {
		rtc.WriteError(w, r, h.log, err)
	}
}

func (h *Handler) play(w http.ResponseWriter, r *http.Request) error {
	reg := h.cfg.Sessions
	room, peer := r.PathValue("room"), r.PathValue("peer")
	if !events.ValidID(room) {
		return rtc.Errorf(http.StatusBadRequest, "room %q is not a valid id (1-64 of A-Z a-z 0-9 _ -)", room)
	}
	if peer != "" && !events.ValidID(peer) {
		return rtc.Errorf(http.StatusBadRequest, "peer %q is not a valid id", peer)
	}
	claims, err := h.cfg.Auth.Authorize(r, room, auth.Subscribe, reg.Now())
	if err != nil {
		return rtc.AuthError(err)
	}
	offer, parsed, err := rtc.ReadOffer(r)
	if err != nil {
		return err
	}
	kinds := rtc.RecvKinds(parsed)
	if len(kinds) == 0 {
		return rtc.Errorf(http.StatusBadRequest, "WHEP offer receives no audio or video (add recvonly m-lines)")
	}
	if reg.Closing() {
		return rtc.Errorf(http.StatusServiceUnavailable, "server is shutting down")
	}
	publisher, specs, err := h.cfg.Catalog.Published(r.Context(), room, peer)
	switch {
	case errors.Is(err, ErrNoPublisher):
		return &rtc.HTTPError{Status: http.StatusConflict, RetryAfter: 1,
			Msg: fmt.Sprintf("room %q has no published track yet; retry", room)}
	case errors.Is(err, ErrNoPeer):
		return rtc.Errorf(http.StatusNotFound, "peer %q is not in room %q", peer, room)
	case err != nil:
		return fmt.Errorf("whep: catalog of room %s: %w", room, err)
	}
	// Offer's m-lines bound how many tracks of each kind the viewer can take.
	var chosen []TrackSpec
	for _, t := range specs {
		if kinds[t.Kind] > 0 {
			kinds[t.Kind]--
			chosen = append(chosen, t)
		}
	}
	if startingUp(kinds, specs, reg.Now()) {
		return &rtc.HTTPError{Status: http.StatusConflict, RetryAfter: 1,
			Msg: fmt.Sprintf("the publisher in room %q is still starting its tracks; retry", room)}
	}
	if len(chosen) == 0 {
		return rtc.Errorf(http.StatusUnprocessableEntity, "the offer receives none of the kinds published (%d tracks)", len(specs))
	}
	pc, err := h.cfg.API.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return fmt.Errorf("whep: new peer connection: %w", err)
	}
	ids := make([]string, len(chosen))
	for i, t := range chosen {
		ids[i] = t.Track
	}
	id := events.NewID()
	v := &viewer{h: h, core: NewCore(h.cfg.Timeouts, id, reg.Node(), publisher, ids)}
	v.core.SetIdentity(claims.Identity, claims.Name)
	v.s = reg.NewSession(id, room, pc, v.core, h.log.With("room", room, "session", id, "identity", claims.Identity))
	v.s.Identity = claims.Identity
	v.s.OnPLI = v.sendPLI
	ok := false
	defer func() {
		if !ok {
			_ = pc.Close()
		}
	}()
	answer, err := rtc.Answer(r.Context(), pc, offer, func() error {
		for _, spec := range chosen {
			t := v.track(spec, publisher)
			sender, err := pc.AddTrack(t)
			if err != nil {
				return rtc.Errorf(http.StatusUnprocessableEntity, "cannot send %s track %s: %v", spec.Kind, spec.Track, err)
			}
			reg.Go(func() { t.ReadRTCP(sender) })
		}
		return nil
	})
	if err != nil {
		return err
	}
	if err := reg.Add(v.s); err != nil {
		return err
	}
	now := reg.Now()
	if err := v.s.StepErr(func(rtc.Core) Output { return v.core.Answered(now, r.RemoteAddr, r.UserAgent()) }); err != nil {
		v.s.Step(func(rtc.Core) Output { return v.core.Shutdown(now) })
		return rtc.Errorf(http.StatusServiceUnavailable, "cannot record the session in the event log: %v", err)
	}
	ok = true
	v.s.Log.Info("playing session started", "publisher", publisher, "tracks", len(chosen), "remote", r.RemoteAddr)
	rtc.WriteAnswer(w, h.cfg.Prefix+"/"+room+"/s/"+id, `"`+id+`"`, answer)
	return nil
}

// deleted is the core's input for a client DELETE.
func deleted(c rtc.Core, now time.Time) Output { return c.(*Core).Deleted(now) }

// viewer is the shell state of one WHEP session beyond the generic Session.
type viewer struct {
	h    *Handler
	s    *rtc.Session
	core *Core
}

func (v *viewer) sendPLI(track string) {
	pli, err := (&rtcp.PictureLossIndication{}).Marshal()
	if err == nil {
		err = v.h.cfg.Bus.SendFeedback(v.s.Room, track, pli)
	}
	if err != nil {
		v.s.Log.Debug("keyframe request not sent", "track", track, "err", err)
	}
}

// startingUp reports whether the viewer wants a kind (left in wanted) that the publisher does not
// send yet while its newest track is younger than StartGrace: more tracks are likely on the way.
func startingUp(wanted map[string]int, specs []TrackSpec, now time.Time) bool {
	var newest time.Time
	have := map[string]bool{}
	for _, t := range specs {
		have[t.Kind] = true
		if t.Since.After(newest) {
			newest = t.Since
		}
	}
	for kind, n := range wanted {
		if n > 0 && !have[kind] && now.Sub(newest) < StartGrace {
			return true
		}
	}
	return false
}

// track is the forward-fed pion track that plays spec to the viewer. Binding it asks the
// publisher for a keyframe at once; the viewer's PLI and FIR go through the core's throttle.
func (v *viewer) track(spec TrackSpec, publisher string) *forward.Track {
	return &forward.Track{
		Hub: v.h.cfg.Hub, Room: v.s.Room, TrackID: spec.Track, Stream: publisher,
		MediaKind: spec.Kind, Codec: spec.Codec, Fmtp: spec.Fmtp,
		OnBound: func() {
			now := v.h.cfg.Sessions.Now()
			video := spec.Kind == "video"
			v.s.Step(func(rtc.Core) Output { return v.core.Bound(now, spec.Track, video) })
		},
		OnKeyframeRequest: func() {
			now := v.h.cfg.Sessions.Now()
			v.s.Step(func(rtc.Core) Output { return v.core.KeyframeRequested(now, spec.Track) })
		},
	}
}
