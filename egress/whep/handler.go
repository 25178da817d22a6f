package whep

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

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
	// Layers are the track's simulcast layers, lowest first (empty or "0": one layer).
	Layers []string
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
	rtc.HTTPConfig
	Bus     *mediabus.MediaBus
	Hub     *forward.Hub
	Catalog Catalog
	// Viewers, when set, makes the sessions' PeerConnections (*rtc.Edge: with its fast
	// egress, when on); nil: HTTPConfig.API's.
	Viewers rtc.Viewers
}

// Handler serves WHEP.
type Handler struct {
	cfg     Config
	ep      *rtc.Endpoint
	playing playing
}

// New returns a handler.
func New(cfg Config) (*Handler, error) {
	if cfg.Bus == nil || cfg.Hub == nil || cfg.Catalog == nil {
		return nil, errors.New("whep: Bus, Hub and Catalog are required")
	}
	ep, err := rtc.NewEndpoint(cfg.HTTPConfig, events.TransportWHEP, auth.Subscribe, "/s/")
	if err != nil {
		return nil, err
	}
	return &Handler{cfg: cfg, ep: ep}, nil
}

// Register adds the WHEP routes to mux: POST /whep/{room} and /whep/{room}/{peer}, the session
// URL /whep/{room}/s/{session} (so that it cannot be confused with /whep/{room}/{peer}).
func (h *Handler) Register(mux *http.ServeMux) {
	h.ep.Register(mux, h.play, "/{room}", "/{room}/{peer}")
	layer := h.ep.Prefix + "/{room}" + h.ep.SessionSegment + "{session}/layer"
	mux.HandleFunc("POST "+layer, h.selectLayer)
	mux.HandleFunc("GET "+layer, h.layers)
	sse := h.ep.Prefix + "/{room}" + h.ep.SessionSegment + "{session}/sse"
	mux.HandleFunc("POST "+sse, h.subscribeEvents)
	mux.HandleFunc("GET "+sse, h.streamEvents)
}

func (h *Handler) play(w http.ResponseWriter, r *http.Request) error {
	peer := r.PathValue("peer")
	if peer != "" && !events.ValidID(peer) {
		return rtc.Errorf(http.StatusBadRequest, "peer %q is not a valid id", peer)
	}
	o, err := h.ep.Accept(r)
	if err != nil {
		return err
	}
	kinds := rtc.RecvKinds(o.Parsed)
	if len(kinds) == 0 {
		return rtc.Errorf(http.StatusBadRequest, "WHEP offer receives no audio or video (add recvonly m-lines)")
	}
	publisher, chosen, err := h.choose(r.Context(), o.Room, peer, kinds)
	if err != nil {
		return err
	}
	ids := make([]string, len(chosen))
	for i, t := range chosen {
		ids[i] = t.Track
	}
	if gone := h.playing.endedOf(o.Room, ids); len(gone) > 0 {
		// The room's state named a publisher whose tracks ended since (it left as another
		// joined): the next try finds the room as it is now.
		return &rtc.HTTPError{Status: http.StatusConflict, RetryAfter: 1,
			Msg: fmt.Sprintf("the tracks of the publisher in room %q just ended; retry", o.Room)}
	}
	v := &viewer{h: h, core: NewCore(h.cfg.Timeouts, h.ep.Peer(o), publisher, ids)}
	// The layer extension of the WHEP draft: where the viewer chooses its simulcast layer.
	w.Header().Add("Link", fmt.Sprintf("<%s/%s%s%s/layer>; rel=%q", h.ep.Prefix, o.Room, h.ep.SessionSegment,
		v.core.Peer().ID, LayerRel))
	// The server-sent events extension: the "layers" event as the session's layer changes.
	w.Header().Add("Link", fmt.Sprintf("<%s/%s%s%s/sse>; rel=%q; events=\"layers\"", h.ep.Prefix, o.Room, h.ep.SessionSegment,
		v.core.Peer().ID, EventsRel))
	initial := r.URL.Query().Get("layer") // a first choice, before any packet flows
	if h.cfg.Viewers != nil {
		if o.PC, err = h.cfg.Viewers.NewViewer(); err != nil {
			return fmt.Errorf("whep: %w", err)
		}
	}
	var s *rtc.Session
	return h.ep.Start(w, o, v.core, v.sendPLI, func(ss *rtc.Session) {
		s = ss
		gone := h.playing.add(o.Room, ss, v, ids)
		ss.OnClose(func() { h.playing.remove(o.Room, ss) })
		// A track the catalog named may have ended before the session was indexed.
		if len(gone) > 0 {
			now := h.cfg.Sessions.Now()
			ss.Step(func(rtc.Core) Output {
				var out Output
				for _, t := range gone {
					o := v.core.Unpublished(now, t)
					out.Events = append(out.Events, o.Events...)
					if o.Close != "" {
						out.Close = o.Close
					}
				}
				return out
			})
		}
	}, func() error {
		for _, spec := range chosen {
			t := v.track(s, spec, publisher)
			if initial != "" {
				_ = t.SetTarget(func(lt *forward.LayerTarget) { lt.Manual = initial })
			}
			v.add(t)
			sender, err := s.PC.AddTrack(t)
			if err != nil {
				return rtc.Errorf(http.StatusUnprocessableEntity, "cannot send %s track %s: %v", spec.Kind, spec.Track, err)
			}
			h.cfg.Sessions.Go(func() { t.ReadRTCP(sender) })
		}
		return nil
	}, "publisher", publisher, "tracks", len(chosen))
}

// choose picks the published tracks the viewer's offer can take (its m-lines bound how many
// of each kind): 409 to retry while nothing or not every kind is published yet, 404 for a
// peer not in the room, 422 when the offer takes none of what is published.
func (h *Handler) choose(ctx context.Context, room, peer string, kinds map[string]int) (string, []TrackSpec, error) {
	publisher, specs, err := h.cfg.Catalog.Published(ctx, room, peer)
	switch {
	case errors.Is(err, ErrNoPublisher):
		return "", nil, &rtc.HTTPError{Status: http.StatusConflict, RetryAfter: 1,
			Msg: fmt.Sprintf("room %q has no published track yet; retry", room)}
	case errors.Is(err, ErrNoPeer):
		return "", nil, rtc.Errorf(http.StatusNotFound, "peer %q is not in room %q", peer, room)
	case err != nil:
		return "", nil, fmt.Errorf("whep: catalog of room %s: %w", room, err)
	}
	var chosen []TrackSpec
	for _, t := range specs {
		if kinds[t.Kind] > 0 {
			kinds[t.Kind]--
			chosen = append(chosen, t)
		}
	}
	if startingUp(kinds, specs, h.cfg.Sessions.Now()) {
		return "", nil, &rtc.HTTPError{Status: http.StatusConflict, RetryAfter: 1,
			Msg: fmt.Sprintf("the publisher in room %q is still starting its tracks; retry", room)}
	}
	if len(chosen) == 0 {
		return "", nil, rtc.Errorf(http.StatusUnprocessableEntity, "the offer receives none of the kinds published (%d tracks)", len(specs))
	}
	return publisher, chosen, nil
}

// viewer is the shell state of one WHEP session beyond the generic Session.
type viewer struct {
	h    *Handler
	core *Core

	mu     sync.Mutex
	tracks []*forward.Track
}

func (v *viewer) add(t *forward.Track) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.tracks = append(v.tracks, t)
}

// simulcast is the viewer's tracks that have more than one layer.
func (v *viewer) simulcast() []*forward.Track {
	v.mu.Lock()
	defer v.mu.Unlock()
	var out []*forward.Track
	for _, t := range v.tracks {
		if len(t.Layers) > 1 {
			out = append(out, t)
		}
	}
	return out
}

// sendPLI asks the publisher's node for a keyframe of track or of one of its layers (a
// rtc.LayerKey), on the session's goroutine.
func (v *viewer) sendPLI(s *rtc.Session, key string) { rtc.AskPublisher(v.h.cfg.Bus, s, key) }

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
func (v *viewer) track(s *rtc.Session, spec TrackSpec, publisher string) *forward.Track {
	return &forward.Track{
		Hub: v.h.cfg.Hub, Room: s.Room, TrackID: spec.Track, Stream: publisher,
		MediaKind: spec.Kind, Codec: spec.Codec, Fmtp: spec.Fmtp, Layers: layersOf(spec),
		OnBound: func(layer string) {
			now, key := v.h.cfg.Sessions.Now(), rtc.LayerKey(spec.Track, layer)
			video := spec.Kind == "video"
			s.Step(func(rtc.Core) Output { return v.core.Bound(now, key, video) })
		},
		OnKeyframeRequest: func(layer string) {
			now := v.h.cfg.Sessions.Now()
			key := rtc.LayerKey(spec.Track, layer)
			s.Step(func(rtc.Core) Output { return v.core.KeyframeRequested(now, key) })
		},
	}
}
