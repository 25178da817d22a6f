package rtc

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"

	"github.com/jetmedia/jetmedia/events"
	"github.com/jetmedia/jetmedia/pipeline/auth"
)

// HTTPConfig is what every WebRTC HTTP endpoint (WHIP, WHEP) is wired with.
type HTTPConfig struct {
	API      *webrtc.API
	Sessions *Registry
	// Auth checks bearer tokens: POST needs the endpoint's grant for the room, PATCH and
	// DELETE the session owner's identity (or admin).
	Auth Authorizer
	// Prefix is the URL path the routes live under (default "/" + the transport).
	Prefix   string
	Timeouts Timeouts
	Logger   *slog.Logger
}

// Endpoint is the HTTP side WHIP and WHEP share: the routes, the checks of a POST (room id,
// bearer token, SDP offer), the session's start (answer, join recorded or 503, 201 with its
// Location) and its URL's DELETE, PATCH and OPTIONS. The transports add what their POST does
// between the checks and the answer.
type Endpoint struct {
	HTTPConfig
	// Transport names the sessions (events.TransportWHIP, ...).
	Transport string
	// Grant is what a POST's token must allow in the room.
	Grant auth.Grant
	// SessionSegment sits between the room and the session id in a session URL ("/" gives
	// /whip/{room}/{session}, "/s/" gives /whep/{room}/s/{session}).
	SessionSegment string
	// Log is Logger with the transport as component.
	Log *slog.Logger
}

// NewEndpoint checks c and fills its defaults (Prefix "/<transport>", a discarding Logger).
func NewEndpoint(c HTTPConfig, transport string, grant auth.Grant, sessionSegment string) (*Endpoint, error) {
	if c.Sessions == nil || c.API == nil || c.Auth == nil {
		return nil, fmt.Errorf("rtc: %s endpoint needs API, Sessions and Auth", transport)
	}
	if c.Prefix == "" {
		c.Prefix = "/" + transport
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return &Endpoint{HTTPConfig: c, Transport: transport, Grant: grant, SessionSegment: sessionSegment,
		Log: c.Logger.With("component", transport)}, nil
}

// Register adds POST and OPTIONS on each of posts (paths below Prefix, "" for the prefix
// itself) served by post, and DELETE, PATCH and OPTIONS on the session URL.
func (e *Endpoint) Register(mux *http.ServeMux, post func(http.ResponseWriter, *http.Request) error, posts ...string) {
	serve := func(w http.ResponseWriter, r *http.Request) {
		if err := post(w, r); err != nil {
			WriteError(w, r, e.Log, err)
		}
	}
	for _, p := range posts {
		mux.HandleFunc("POST "+e.Prefix+p, serve)
		mux.HandleFunc("OPTIONS "+e.Prefix+p, options)
	}
	session := e.Prefix + "/{room}" + e.SessionSegment + "{session}"
	mux.HandleFunc("DELETE "+session, e.delete)
	mux.HandleFunc("PATCH "+session, e.patch)
	mux.HandleFunc("OPTIONS "+session, options)
}

func options(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Accept-Post", "application/sdp")
	w.Header().Set("Allow", "OPTIONS, POST, DELETE, PATCH")
	w.WriteHeader(http.StatusNoContent)
}

// delete ends a session for a token that owns it (or an admin's): reason closed. The reply
// waits until the session has ended (its leave recorded, its PeerConnection closed).
func (e *Endpoint) delete(w http.ResponseWriter, r *http.Request) {
	s, err := e.Sessions.FindOwned(r, e.Auth, e.Transport)
	if err != nil {
		WriteError(w, r, e.Log, err)
		return
	}
	now := e.Sessions.Now()
	s.Step(func(c Core) Output { return c.Deleted(now) })
	select {
	case <-s.Done():
	case <-r.Context().Done():
		return
	}
	w.WriteHeader(http.StatusOK)
}

// patch applies trickle ICE from the session's owner.
func (e *Endpoint) patch(w http.ResponseWriter, r *http.Request) {
	s, err := e.Sessions.FindOwned(r, e.Auth, e.Transport)
	if err == nil {
		err = Trickle(r, s.PC)
	}
	if err != nil {
		WriteError(w, r, e.Log, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// Offer is a POST that passed the checks every WHIP and WHEP POST makes.
type Offer struct {
	Room   string
	Claims auth.Claims
	SDP    string
	Parsed *sdp.SessionDescription
	// PC, when set, is the PeerConnection Start uses (and closes on failure); nil: a new
	// one of API's.
	PC  *webrtc.PeerConnection
	req *http.Request
}

// Accept checks a POST: 400 for a bad room id or offer, 401/403 for its token, 415/413 for its
// body, 503 while the node shuts down.
func (e *Endpoint) Accept(r *http.Request) (*Offer, error) {
	room := r.PathValue("room")
	if !events.ValidID(room) {
		return nil, Errorf(http.StatusBadRequest, "room %q is not a valid id (1-64 of A-Z a-z 0-9 _ -)", room)
	}
	claims, err := e.Auth.Authorize(r, room, e.Grant, e.Sessions.Now())
	if err != nil {
		return nil, AuthError(err)
	}
	sdpText, parsed, err := ReadOffer(r)
	if err != nil {
		return nil, err
	}
	if e.Sessions.Closing() {
		return nil, Errorf(http.StatusServiceUnavailable, "server is shutting down")
	}
	return &Offer{Room: room, Claims: claims, SDP: sdpText, Parsed: parsed, req: r}, nil
}

// Peer is who a session started by o is: a new id on this node, o's token identity.
func (e *Endpoint) Peer(o *Offer) Peer {
	return Peer{ID: events.NewID(), Node: e.Sessions.Node(), Identity: o.Claims.Identity, Name: o.Claims.Name}
}

// HTTPCore is a session core started by a WHIP or WHEP POST.
type HTTPCore interface {
	Core
	Peer() Peer
	Answered(now time.Time, remoteAddr, userAgent string) Output
}

// Start is the rest of a POST: a PeerConnection and session for core (setup runs with both
// before the offer is applied: OnTrack; before runs between the offer and the answer: tracks
// to send), the answer, the join recorded (503 when it cannot be), the start logged with
// attrs, the 201. On any error the session ends and nothing is left behind.
func (e *Endpoint) Start(w http.ResponseWriter, o *Offer, core HTTPCore, onPLI func(s *Session, track string),
	setup func(s *Session), before func() error, attrs ...any) error {
	pc := o.PC
	if pc == nil {
		var err error
		if pc, err = e.API.NewPeerConnection(webrtc.Configuration{}); err != nil {
			return fmt.Errorf("rtc: %s: new peer connection: %w", e.Transport, err)
		}
	}
	s, err := e.Sessions.NewSession(SessionConfig{ID: core.Peer().ID, Room: o.Room, Transport: e.Transport,
		Identity: o.Claims.Identity, PC: pc, Core: core, OnPLI: onPLI})
	if err != nil {
		_ = pc.Close()
		return err
	}
	ok := false
	defer func() {
		if !ok {
			now := e.Sessions.Now()
			s.Step(func(c Core) Output { return c.Shutdown(now) })
		}
	}()
	if setup != nil {
		setup(s)
	}
	answer, err := Answer(o.req.Context(), pc, o.SDP, before)
	if err != nil {
		return err
	}
	now := e.Sessions.Now()
	r := o.req
	if err := s.StepWait(func(Core) Output { return core.Answered(now, r.RemoteAddr, r.UserAgent()) }); err != nil {
		if errors.Is(err, ErrSessionClosed) {
			return Errorf(http.StatusServiceUnavailable, "server is shutting down")
		}
		return Errorf(http.StatusServiceUnavailable, "cannot record the session in the event log: %v", err)
	}
	ok = true
	s.Started(append(attrs, "remote", r.RemoteAddr)...)
	WriteAnswer(w, e.Prefix+"/"+o.Room+e.SessionSegment+s.ID, `"`+s.ID+`"`, answer)
	return nil
}
