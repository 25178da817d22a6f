package rtc

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/jetmedia/jetmedia/events"
)

// Output is what a session core asks its shell to do after an input: append Events in order,
// request a keyframe of each track in PLI, tear the session down when Close is set.
type Output struct {
	Events []events.Payload
	PLI    []string
	Close  bool
}

// Core is the part of a sans-IO session core the shared shell drives.
type Core interface {
	Connected(now time.Time) Output
	Disconnected(now time.Time) Output
	Failed(now time.Time) Output
	Shutdown(now time.Time) Output
	Tick(now time.Time) Output
}

// Appender stores events; eventlog.Appender is the real one.
type Appender interface {
	Append(ctx context.Context, evs ...events.Envelope) (uint64, error)
}

// RegistryConfig wires a Registry.
type RegistryConfig struct {
	Appender Appender
	Node     string
	Logger   *slog.Logger
	// Now is the clock (time.Now by default).
	Now func() time.Time
}

// Registry owns a transport's sessions on a node: it ticks their cores, runs the goroutines
// they need, and closes them all on Close.
type Registry struct {
	cfg    RegistryConfig
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu       sync.Mutex
	sessions map[string]*Session
	closed   bool
}

// NewRegistry starts a registry's ticker; Close stops it.
func NewRegistry(cfg RegistryConfig) (*Registry, error) {
	if cfg.Appender == nil || cfg.Node == "" {
		return nil, errors.New("rtc: registry needs an Appender and a Node")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &Registry{cfg: cfg, ctx: ctx, cancel: cancel, sessions: map[string]*Session{}}
	r.wg.Add(1)
	go r.tick()
	return r, nil
}

// Now reads the registry's clock.
func (r *Registry) Now() time.Time { return r.cfg.Now() }

// Node is the node the registry records in events.
func (r *Registry) Node() string { return r.cfg.Node }

// Go runs fn on a goroutine the registry waits for in Close.
func (r *Registry) Go(fn func()) {
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		fn()
	}()
}

// Len is the number of live sessions.
func (r *Registry) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.sessions)
}

// Find returns the live session id of room, or a 404 HTTPError.
func (r *Registry) Find(room, id string) (*Session, error) {
	r.mu.Lock()
	s, ok := r.sessions[id]
	r.mu.Unlock()
	if !ok || s.Room != room {
		return nil, Errorf(http.StatusNotFound, "no session %q in room %q", id, room)
	}
	return s, nil
}

// Add registers a session whose PeerConnection has been answered. It fails once the registry
// is closing.
func (r *Registry) Add(s *Session) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return Errorf(http.StatusServiceUnavailable, "server is shutting down")
	}
	r.sessions[s.ID] = s
	return nil
}

func (r *Registry) remove(s *Session) {
	r.mu.Lock()
	delete(r.sessions, s.ID)
	r.mu.Unlock()
}

func (r *Registry) snapshot() []*Session {
	r.mu.Lock()
	defer r.mu.Unlock()
	all := make([]*Session, 0, len(r.sessions))
	for _, s := range r.sessions {
		all = append(all, s)
	}
	return all
}

// Closing reports whether Close has begun.
func (r *Registry) Closing() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.closed
}

// Close ends every session (reason "shutdown") and waits for every goroutine. Idempotent.
func (r *Registry) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	r.mu.Unlock()
	for _, s := range r.snapshot() {
		now := r.cfg.Now()
		s.Step(func(c Core) Output { return c.Shutdown(now) })
	}
	r.cancel()
	r.wg.Wait()
	return nil
}

func (r *Registry) tick() {
	defer r.wg.Done()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-r.ctx.Done():
			return
		case <-t.C:
		}
		now := r.cfg.Now()
		for _, s := range r.snapshot() {
			s.Step(func(c Core) Output { return c.Tick(now) })
		}
	}
}

// Session is the shell around one core: it serialises the core's inputs, appends the events
// they produce in order, and tears the PeerConnection down when the core says so.
type Session struct {
	ID   string
	Room string
	// Identity is the token identity that created the session (set before Add, never
	// changed): the actor of the session's events and the owner its PATCH and DELETE need.
	// Empty: the session's id is the actor.
	Identity string
	PC       *webrtc.PeerConnection
	Log      *slog.Logger
	// OnPLI sends a keyframe request for a track (toward the publisher); called under the
	// session lock.
	OnPLI func(track string)

	reg     *Registry
	mu      sync.Mutex
	core    Core
	closers []func()
	closed  bool
}

// NewSession returns a session of reg; register it with reg.Add once answered.
func (r *Registry) NewSession(id, room string, pc *webrtc.PeerConnection, core Core, log *slog.Logger) *Session {
	s := &Session{ID: id, Room: room, PC: pc, Log: log, reg: r, core: core}
	pc.OnConnectionStateChange(s.onState)
	return s
}

// OnClose registers fn to run when the session ends (before the PeerConnection closes).
func (s *Session) OnClose(fn func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		go fn()
		return
	}
	s.closers = append(s.closers, fn)
}

// Step feeds one input to the core and carries out its output; errors are logged.
func (s *Session) Step(in func(Core) Output) {
	if err := s.StepErr(in); err != nil {
		s.Log.Error("session step failed", "err", err)
	}
}

// StepErr feeds one input to the core and carries out its output. Appends happen under the
// session lock, so a session's events reach the log in the order its core produced them.
func (s *Session) StepErr(in func(Core) Output) error {
	s.mu.Lock()
	out := in(s.core)
	var err error
	if len(out.Events) > 0 {
		err = s.append(out.Events)
	}
	if s.OnPLI != nil {
		for _, t := range out.PLI {
			s.OnPLI(t)
		}
	}
	closing := out.Close && !s.closed
	var closers []func()
	if closing {
		s.closed, closers, s.closers = true, s.closers, nil
	}
	s.mu.Unlock()
	if closing {
		for _, fn := range closers {
			fn()
		}
		s.reg.remove(s)
		if cerr := s.PC.Close(); cerr != nil {
			s.Log.Debug("close peer connection", "err", cerr)
		}
		s.Log.Info("session ended")
	}
	return err
}

func (s *Session) append(ps []events.Payload) error {
	now := s.reg.cfg.Now()
	actor := s.Identity
	if actor == "" {
		actor = s.ID
	}
	envs := make([]events.Envelope, 0, len(ps))
	for _, p := range ps {
		e, err := events.New(events.Meta{Room: s.Room, Actor: actor, Node: s.reg.cfg.Node, Time: now}, p)
		if err != nil {
			return err
		}
		envs = append(envs, e)
	}
	ctx, cancel := context.WithTimeout(s.reg.ctx, 10*time.Second)
	defer cancel()
	if s.reg.ctx.Err() != nil {
		// Shutting down: the registry context is cancelled after sessions close, so this
		// only happens for late inputs; give them a context of their own.
		ctx, cancel = context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
	}
	_, err := s.reg.cfg.Appender.Append(ctx, envs...)
	return err
}

func (s *Session) onState(st webrtc.PeerConnectionState) {
	now := s.reg.cfg.Now()
	switch st {
	case webrtc.PeerConnectionStateConnected:
		s.Step(func(c Core) Output { return c.Connected(now) })
	case webrtc.PeerConnectionStateDisconnected:
		s.Step(func(c Core) Output { return c.Disconnected(now) })
	case webrtc.PeerConnectionStateFailed:
		// Closing a PeerConnection from inside its own callback can deadlock pion.
		s.reg.Go(func() { s.Step(func(c Core) Output { return c.Failed(now) }) })
	}
}

// Answer applies an offer to pc, answers it and waits for ICE gathering (non-trickle answers
// carry every candidate). before runs between SetRemoteDescription and CreateAnswer (to add
// tracks). Client-side problems come back as HTTPErrors.
func Answer(ctx context.Context, pc *webrtc.PeerConnection, offer string, before func() error) (string, error) {
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}); err != nil {
		return "", Errorf(http.StatusBadRequest, "SDP offer rejected: %v", err)
	}
	if before != nil {
		if err := before(); err != nil {
			return "", err
		}
	}
	answer, err := pc.CreateAnswer(nil)
	if err != nil {
		return "", Errorf(http.StatusUnprocessableEntity, "cannot answer the offer: %v", err)
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(answer); err != nil {
		return "", Errorf(http.StatusUnprocessableEntity, "cannot apply the answer: %v", err)
	}
	select {
	case <-gathered:
	case <-ctx.Done():
		return "", ctx.Err()
	case <-time.After(5 * time.Second):
		return "", errors.New("rtc: ICE gathering timed out")
	}
	return pc.LocalDescription().SDP, nil
}
