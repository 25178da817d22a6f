package rtc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/jetmedia/jetmedia/events"
)

// Core is the part of a sans-IO session core the shared shell drives. *Lifecycle has every
// method, so a transport core that embeds one is a Core.
type Core interface {
	Connected(now time.Time) Output
	Disconnected(now time.Time) Output
	Failed(now time.Time) Output
	Deleted(now time.Time) Output
	Shutdown(now time.Time) Output
	Tick(now time.Time) Output
	EndedInLog(now time.Time) Output
}

// Appender stores events; eventlog.Appender is the real one.
type Appender interface {
	Append(ctx context.Context, evs ...events.Envelope) (uint64, error)
}

// ErrSessionClosed: an input that must be recorded reached a session that had already ended.
var ErrSessionClosed = errors.New("rtc: session closed")

// appendTimeout bounds one append of a session's events.
const appendTimeout = 10 * time.Second

// RegistryConfig wires a Registry.
type RegistryConfig struct {
	Appender Appender
	Node     string
	Logger   *slog.Logger
	// Now is the clock (time.Now by default).
	Now func() time.Time
	// TickInterval is how often every session's core gets Tick (default 1 s).
	TickInterval time.Duration
}

// Registry owns every WebRTC session of a node, whatever its transport: it ticks their cores,
// runs the goroutines they need, and ends them all on Close.
type Registry struct {
	cfg    RegistryConfig
	log    *slog.Logger
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
	if cfg.TickInterval <= 0 {
		cfg.TickInterval = time.Second
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &Registry{cfg: cfg, log: cfg.Logger.With("component", "sessions"), ctx: ctx, cancel: cancel,
		sessions: map[string]*Session{}}
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

// Len is the number of live sessions of transport ("": of every transport).
func (r *Registry) Len(transport string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	if transport == "" {
		return len(r.sessions)
	}
	n := 0
	for _, s := range r.sessions {
		if s.Transport == transport {
			n++
		}
	}
	return n
}

// Find returns the live session id of transport in room, or a 404 HTTPError.
func (r *Registry) Find(transport, room, id string) (*Session, error) {
	r.mu.Lock()
	s, ok := r.sessions[id]
	r.mu.Unlock()
	if !ok || s.Room != room || s.Transport != transport {
		return nil, Errorf(http.StatusNotFound, "no session %q in room %q", id, room)
	}
	return s, nil
}

// Joined is a live session whose peer.joined the log holds.
type Joined struct {
	ID, Room, Transport string
	// Seq is a log sequence at or past the session's peer.joined: a rooms bucket whose room
	// is folded up to Seq shows the peer unless the log has ended it.
	Seq uint64
}

// Joined lists the live sessions whose join the log holds and that are not closing.
func (r *Registry) Joined() []Joined {
	var out []Joined
	for _, s := range r.snapshot() {
		seq := s.joinSeq.Load()
		if seq == 0 {
			continue
		}
		s.mu.Lock()
		closing := s.closing
		s.mu.Unlock()
		if !closing {
			out = append(out, Joined{ID: s.ID, Room: s.Room, Transport: s.Transport, Seq: seq})
		}
	}
	return out
}

// EndedInLog ends session id because the log has ended it (its core's EndedInLog: nothing
// is recorded). It reports whether that ended the session: false if it was gone or closing
// already for another reason.
func (r *Registry) EndedInLog(id string) bool {
	r.mu.Lock()
	s, ok := r.sessions[id]
	r.mu.Unlock()
	if !ok {
		return false
	}
	now := r.cfg.Now()
	ended := false
	s.step(func(c Core) Output {
		out := c.EndedInLog(now)
		ended = out.Close != ""
		return out
	}, nil)
	return ended
}

// SessionConfig describes a new session.
type SessionConfig struct {
	ID, Room, Transport string
	// Identity is the token identity that created the session: the actor of its events and
	// the owner its PATCH and DELETE need. Empty: the session's id is the actor.
	Identity string
	PC       *webrtc.PeerConnection
	Core     Core
	// OnPLI sends a keyframe request for a track; it runs on the session's own goroutine.
	OnPLI func(s *Session, track string)
	// OnUnrecorded hears of events the log refused for an input nobody waited for (Step, not
	// StepWait), so the transport can tell its client; it runs on the session's own goroutine.
	OnUnrecorded func(s *Session, evs []events.Payload, err error)
}

// NewSession registers a session and starts its outbox. The session lives until its core
// says Close (Shutdown on a failed start: that also closes PC). It fails with 503 once the
// registry is closing.
func (r *Registry) NewSession(cfg SessionConfig) (*Session, error) {
	s := &Session{
		ID: cfg.ID, Room: cfg.Room, Transport: cfg.Transport, Identity: cfg.Identity, PC: cfg.PC,
		Log:  r.log.With("transport", cfg.Transport, "room", cfg.Room, "session", cfg.ID, "identity", cfg.Identity),
		reg:  r,
		core: cfg.Core, onPLI: cfg.OnPLI, onUnrecorded: cfg.OnUnrecorded,
		wake: make(chan struct{}, 1), done: make(chan struct{}),
	}
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil, Errorf(http.StatusServiceUnavailable, "server is shutting down")
	}
	r.sessions[s.ID] = s
	r.wg.Add(1)
	r.mu.Unlock()
	go func() {
		defer r.wg.Done()
		s.run()
	}()
	if s.PC != nil {
		s.PC.OnConnectionStateChange(s.onState)
	}
	return s, nil
}

func (r *Registry) remove(s *Session) {
	r.mu.Lock()
	if r.sessions[s.ID] == s {
		delete(r.sessions, s.ID)
	}
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

// Close ends every session (reason shutdown), waits until each has recorded its end, then
// stops and waits for every goroutine. Idempotent.
func (r *Registry) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	r.mu.Unlock()
	all := r.snapshot()
	for _, s := range all {
		now := r.cfg.Now()
		s.Step(func(c Core) Output { return c.Shutdown(now) })
	}
	for _, s := range all {
		<-s.done
	}
	r.cancel()
	waited := make(chan struct{})
	go func() {
		r.wg.Wait()
		close(waited)
	}()
	select {
	case <-waited:
	case <-time.After(closeWait):
		// A read blocked inside pion after its PeerConnection closed (see EndReadsOnClose)
		// must not hold the node's shutdown for good: say so and go on.
		r.log.Error("session goroutines still running after their sessions ended; not waiting for them",
			"waited", closeWait)
	}
	return nil
}

// closeWait bounds Close's wait for the sessions' goroutines once every session has ended
// (their reads end when the PeerConnections close, within milliseconds).
const closeWait = 10 * time.Second

func (r *Registry) tick() {
	defer r.wg.Done()
	t := time.NewTicker(r.cfg.TickInterval)
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

// Session is the actor around one core. Inputs (Step) are serialised; the core's outputs go
// into an ordered outbox that the session's own goroutine carries out: it appends the events
// (so the session's events reach the log in the order its core produced them), sends PLIs,
// and ends the session. No network or log I/O happens under the session's lock.
type Session struct {
	ID, Room, Transport, Identity string
	PC                            *webrtc.PeerConnection
	// Log carries the session's transport, room, id and identity.
	Log *slog.Logger

	reg          *Registry
	onPLI        func(s *Session, track string)
	onUnrecorded func(s *Session, evs []events.Payload, err error)
	wake         chan struct{}
	done         chan struct{} // closed when the session has ended and its closers have run
	// started is when the session's join was recorded (zero: never).
	started   atomic.Int64
	iceFailed atomic.Bool
	// joinSeq is the log sequence at or past the session's peer.joined once the log took it
	// (zero: not yet), joinedAt that event's time (UnixNano): what the log knows the
	// session by (EndedInLog, endingIDs).
	joinSeq  atomic.Uint64
	joinedAt atomic.Int64
	// reason is why the session ended (set once it has).
	reason atomic.Value

	mu      sync.Mutex // serialises the core's inputs; guards the fields below
	core    Core
	outbox  []job
	closing bool // a Close output is queued: nothing follows it
	ended   bool // the outbox ran the Close
	closers []func()
}

// job is one core output waiting in the outbox; res, when set, gets the append's error.
type job struct {
	out Output
	res chan error
}

// Done is closed once the session has ended and its closers have run.
func (s *Session) Done() <-chan struct{} { return s.done }

// OnClose registers fn to run when the session ends (before the PeerConnection closes), on
// the session's goroutine, or at once on a registry goroutine if it has ended already.
func (s *Session) OnClose(fn func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended {
		s.reg.Go(fn)
		return
	}
	s.closers = append(s.closers, fn)
}

// Step feeds one input to the core and queues its output; failures to record are logged.
func (s *Session) Step(in func(Core) Output) { s.step(in, nil) }

// StepWait feeds one input to the core, queues its output and waits until the output's events
// are in the log: the error is the append's (ErrSessionClosed if the session had already
// ended). Requests that must fail when their event cannot be recorded use it.
func (s *Session) StepWait(in func(Core) Output) error {
	res := make(chan error, 1)
	if !s.step(in, res) {
		return ErrSessionClosed
	}
	return <-res
}

// step runs in on the core under the lock and queues the output; false if the session had
// already ended (res is then never answered).
func (s *Session) step(in func(Core) Output, res chan error) bool {
	s.mu.Lock()
	if s.closing {
		// The core ignores inputs once closed; run it anyway for the caller's side effects.
		in(s.core)
		s.mu.Unlock()
		return false
	}
	out := in(s.core)
	if len(out.Events) == 0 && len(out.PLI) == 0 && out.Close == "" {
		s.mu.Unlock()
		if res != nil {
			res <- nil
		}
		return true
	}
	s.closing = out.Close != ""
	s.outbox = append(s.outbox, job{out: out, res: res})
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
	return true
}

// run carries out the outbox in order until the session ends.
func (s *Session) run() {
	defer close(s.done)
	for range s.wake {
		s.mu.Lock()
		jobs := s.outbox
		s.outbox = nil
		s.mu.Unlock()
		for _, j := range jobs {
			if s.carry(j) {
				return
			}
		}
	}
}

// carry does what one output asks; true once the session has ended.
func (s *Session) carry(j job) bool {
	var err error
	if len(j.out.Events) > 0 {
		var envs []events.Envelope
		var seq uint64
		if envs, err = s.envelopes(j.out.Events, j.out.Close != ""); err == nil {
			seq, err = s.appendEnvelopes(envs)
		}
		if err != nil && envs != nil && j.out.Close != "" && j.out.Close != ReasonShutdown && j.res == nil {
			seq, err = s.retryEnd(envs, err)
		}
		if err == nil {
			s.noteJoin(envs, seq)
		}
	}
	if j.res != nil {
		j.res <- err
	} else if err != nil {
		s.Log.Error("session events not recorded", "events", len(j.out.Events), "err", err)
		if s.onUnrecorded != nil {
			s.onUnrecorded(s, j.out.Events, err)
		}
	}
	if s.onPLI != nil {
		for _, t := range j.out.PLI {
			s.onPLI(s, t)
		}
	}
	if j.out.Close == "" {
		return false
	}
	s.end(j.out.Close)
	return true
}

// end runs the closers, forgets the session, closes its PeerConnection and logs its end.
func (s *Session) end(reason Reason) {
	s.reason.Store(reason)
	s.mu.Lock()
	s.ended = true
	closers := s.closers
	s.closers = nil
	s.mu.Unlock()
	for _, fn := range closers {
		fn()
	}
	s.reg.remove(s)
	attrs := []any{"reason", string(reason)}
	if start := s.started.Load(); start != 0 {
		attrs = append(attrs, "duration", s.reg.Now().Sub(time.Unix(0, start)).Round(time.Millisecond).String())
	}
	if s.PC != nil {
		if reason == ReasonTimeout || s.iceFailed.Load() {
			// Why it never connected: the pairs ICE tried, and how far each got.
			attrs = append(attrs, "ice_state", s.PC.ICEConnectionState().String(), "candidate_pairs", CandidatePairs(s.PC))
		}
		if err := s.PC.Close(); err != nil {
			s.Log.Debug("close peer connection", "err", err)
		}
	}
	if s.started.Load() != 0 {
		s.Log.Info("session ended", attrs...)
	} else {
		s.Log.Debug("session abandoned before it started", attrs...)
	}
}

// Started records that the session's join is in the log and logs its one start line.
func (s *Session) Started(attrs ...any) {
	s.started.Store(s.reg.Now().UnixNano())
	s.Log.Info("session started", attrs...)
}

// EndReason is why the session ended ("" while it goes on).
func (s *Session) EndReason() Reason {
	r, _ := s.reason.Load().(Reason)
	return r
}

// noteJoin remembers, when envs (stored at or before seq) hold the session's peer.joined,
// where and when the log has it.
func (s *Session) noteJoin(envs []events.Envelope, seq uint64) {
	for _, e := range envs {
		if e.Type == events.TypePeerJoined {
			s.joinedAt.Store(e.Time.UnixNano())
			s.joinSeq.Store(seq)
		}
	}
}

// envelopes stamps the session's events (ids, time, actor) once, so that a retried append
// of them is stored once. The events that end a joined session (closing) get the ids a
// node ending it in the log derives (events.EndingID): should the log have ended the session
// a moment before it closes on its own (a survivor took this node for lost, and the session
// closed before EndedInLog reached it), its end is stored once, not twice.
func (s *Session) envelopes(ps []events.Payload, closing bool) ([]events.Envelope, error) {
	now := s.reg.cfg.Now()
	actor := s.Identity
	if actor == "" {
		actor = s.ID
	}
	envs := make([]events.Envelope, 0, len(ps))
	for _, p := range ps {
		e, err := events.New(events.Meta{Room: s.Room, Actor: actor, Node: s.reg.cfg.Node, Time: now}, p)
		if err != nil {
			return nil, fmt.Errorf("rtc: session %s: %w", s.ID, err)
		}
		if closing {
			if id := s.endingID(p); id != "" {
				e.ID = id
			}
		}
		envs = append(envs, e)
	}
	return envs, nil
}

// endingID is the derived id of an event that ends part of the session (its peer.left, a
// track unpublished, a subscription ended), "" for other events or before its join is in
// the log.
func (s *Session) endingID(p events.Payload) string {
	joined := s.joinedAt.Load()
	if joined == 0 {
		return ""
	}
	at := time.Unix(0, joined).UTC()
	switch p := p.(type) {
	case events.PeerLeft:
		return events.EndingID(s.Room, s.reg.cfg.Node, p.Peer, at, "left")
	case events.TrackUnpublished:
		return events.EndingID(s.Room, s.reg.cfg.Node, p.Peer, at, "track", p.Track)
	case events.SubscriptionEnded:
		return events.EndingID(s.Room, s.reg.cfg.Node, p.Peer, at, "sub", p.Track)
	}
	return ""
}

// appendEnvelopes appends envs and returns the log's sequence of the last.
func (s *Session) appendEnvelopes(envs []events.Envelope) (uint64, error) {
	// Not the registry's context: Close cancels it only after every session has recorded
	// its end.
	ctx, cancel := context.WithTimeout(context.Background(), appendTimeout)
	defer cancel()
	seq, err := s.reg.cfg.Appender.Append(ctx, envs...)
	if err != nil {
		return 0, fmt.Errorf("rtc: session %s: append %d events: %w", s.ID, len(envs), err)
	}
	return seq, nil
}

// endPatience is how long a session's last events (its subscriptions' and its own end) are
// tried again when the log does not take them, e.g. while a replicated stream elects a new
// leader after a node's death: without them the log and the rooms bucket would keep the
// session for good. A session ended by the node's shutdown, or while its registry closes,
// tries once (the node's next start ends the sessions its log still holds).
const endPatience = time.Minute

// retryEnd appends the session's last events again, with backoff, until the log takes them,
// endPatience has passed or the registry closes; it returns the sequence or the last error.
func (s *Session) retryEnd(envs []events.Envelope, err error) (uint64, error) {
	s.Log.Warn("session end not recorded yet; trying again", "events", len(envs), "err", err)
	deadline := time.Now().Add(endPatience)
	for wait := 250 * time.Millisecond; time.Now().Before(deadline) && !s.reg.Closing(); wait = min(2*wait, 4*time.Second) {
		time.Sleep(wait)
		seq, err2 := s.appendEnvelopes(envs)
		if err = err2; err == nil {
			s.Log.Info("session end recorded after a retry", "events", len(envs))
			return seq, nil
		}
	}
	return 0, err
}

func (s *Session) onState(st webrtc.PeerConnectionState) {
	now := s.reg.cfg.Now()
	switch st {
	case webrtc.PeerConnectionStateConnected:
		s.Step(func(c Core) Output { return c.Connected(now) })
	case webrtc.PeerConnectionStateDisconnected:
		s.Step(func(c Core) Output { return c.Disconnected(now) })
	case webrtc.PeerConnectionStateFailed:
		// The outbox closes the PeerConnection, never this pion callback (that can deadlock).
		s.iceFailed.Store(true)
		s.Step(func(c Core) Output { return c.Failed(now) })
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
	t := time.NewTimer(5 * time.Second)
	defer t.Stop()
	select {
	case <-gathered:
	case <-ctx.Done():
		return "", ctx.Err()
	case <-t.C:
		return "", errors.New("rtc: ICE gathering timed out")
	}
	return pc.LocalDescription().SDP, nil
}
