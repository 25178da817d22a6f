package signal

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"github.com/coder/websocket/wsjson"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/pion/webrtc/v4"

	"github.com/jetmedia/jetmedia/events"
	"github.com/jetmedia/jetmedia/pipeline/audiolevel"
	"github.com/jetmedia/jetmedia/pipeline/auth"
	"github.com/jetmedia/jetmedia/pipeline/mediabus"
	"github.com/jetmedia/jetmedia/pipeline/rtc"
)

// Verifier checks a join's token; *auth.Keyring is one.
type Verifier interface {
	Verify(token string, now time.Time) (auth.Claims, error)
}

// Deliverer makes the pion track that carries one published track to one client: onBound runs
// once packets flow to it, onKeyframeRequest for the client's PLI and FIR and a layer switch's
// key frame, each naming the simulcast layer it is about ("" for all). Egress provides it (a
// forward.Track on the node's hub), wired by cmd, because ingress may not import egress.
type Deliverer func(room string, spec TrackSpec, onBound, onKeyframeRequest func(layer string)) DeliveredTrack

// LayerChooser is a DeliveredTrack that forwards one of several simulcast layers; the client's
// choice reaches it here (nil pointers: unchanged).
type LayerChooser interface {
	ChooseLayer(quality *string, width, height *int) error
}

// DeliveredTrack is a pion TrackLocal fed by the node's fan-out of a published track.
type DeliveredTrack interface {
	webrtc.TrackLocal
	// ReadRTCP answers the client's feedback until the sender stops.
	ReadRTCP(sender *webrtc.RTPSender)
	// Detach stops the packets to the client; idempotent.
	Detach()
}

// Publishers makes a session's PeerConnection and, when the edge takes the RTP it publishes
// itself, the FastIngest that does (nil otherwise); *rtc.Edge is one.
type Publishers interface {
	NewPublisher() (*webrtc.PeerConnection, *rtc.FastIngest, error)
}

// Config wires a Handler.
type Config struct {
	API *webrtc.API
	// Publishers, when set, makes the sessions' PeerConnections (*rtc.Edge: with its fast
	// ingest, when on); nil: API's.
	Publishers Publishers
	Sessions   *rtc.Registry
	Bus        *mediabus.MediaBus
	Deliver    Deliverer
	// Levels reads the audio level of published audio tracks (nil: not read).
	Levels *rtc.Levels
	// Rooms is the rooms KV bucket the session watches for the room's state.
	Rooms jetstream.KeyValue
	// Data carries data messages on dm.<room>[.<peer>] (core NATS).
	Data *nats.Conn
	Auth Verifier
	// Path is where the WebSocket is served (default "/rtc").
	Path string
	// JoinTimeout bounds the wait for the first message (default 10 s).
	JoinTimeout time.Duration
	// ResumeGrace is how long a session outlives a WebSocket that dropped without a leave,
	// waiting for a join with its resume token. 0: the peer leaves when its socket drops.
	ResumeGrace time.Duration
	// Timeouts of the sessions' lifecycle (connect timeout once media is negotiated,
	// disconnect grace, keyframe-request throttle).
	Timeouts rtc.Timeouts
	// Limits bound each peer's client messages (zero fields: DefaultLimits).
	Limits Limits
	// Place, if set, decides where a new session belongs (a resume stays with its session),
	// from the WebSocket handshake's request: nil serves it here; a URL (http or https, as a
	// node announces itself) sends the client there in a redirect message, with nothing
	// recorded; an error refuses the join with CodeFull (retry later). The wiring fills it
	// from the node's presence (placement is a read model, which ingress may not import).
	Place  func(r *http.Request) (*url.URL, error)
	Logger *slog.Logger
}

// Handler serves the signalling WebSocket.
type Handler struct {
	cfg Config
	log *slog.Logger

	mu sync.Mutex
	// live: the running sessions by peer id, for resume.
	live map[string]*conn
	// speakers: each room's latest ranking of speakers on this node (rooms where someone
	// speaks), for the sessions that join after it changed.
	speakers map[string][]audiolevel.Speaker
	// rooms: the running sessions by room, for RoomWritten.
	rooms map[string]map[*conn]struct{}
}

// New returns a handler.
func New(cfg Config) (*Handler, error) {
	if cfg.API == nil || cfg.Sessions == nil || cfg.Bus == nil || cfg.Deliver == nil || cfg.Rooms == nil || cfg.Data == nil || cfg.Auth == nil {
		return nil, errors.New("signal: API, Sessions, Bus, Deliver, Rooms, Data and Auth are required")
	}
	if cfg.Path == "" {
		cfg.Path = "/rtc"
	}
	if cfg.JoinTimeout == 0 {
		cfg.JoinTimeout = 10 * time.Second
	}
	if cfg.ResumeGrace < 0 {
		return nil, fmt.Errorf("signal: negative resume grace %v", cfg.ResumeGrace)
	}
	if err := cfg.Limits.Validate(); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Handler{cfg: cfg, log: cfg.Logger.With("component", "signal"), live: map[string]*conn{},
		speakers: map[string][]audiolevel.Speaker{}, rooms: map[string]map[*conn]struct{}{}}, nil
}

// Register adds the WebSocket route to mux.
func (h *Handler) Register(mux *http.ServeMux) { mux.HandleFunc("GET "+h.cfg.Path, h.serve) }

// Speakers tells the room's sessions on this node who speaks now (tracks, loudest first): the
// hub's audio ranking calls it when that changes. It never blocks: each session takes the
// latest ranking when its loop gets to it.
func (h *Handler) Speakers(room string, ranked []audiolevel.Speaker) {
	h.mu.Lock()
	if len(ranked) == 0 {
		delete(h.speakers, room)
	} else {
		h.speakers[room] = ranked
	}
	conns := make([]*conn, 0, len(h.live))
	for _, c := range h.live {
		if c.s.Room == room {
			conns = append(conns, c)
		}
	}
	h.mu.Unlock()
	for _, c := range conns {
		c.tellSpeakers(ranked)
	}
}

// forgetSpeakers drops a room's ranking once no session of it is left on this node (h.mu
// held).
func (h *Handler) forgetSpeakers(room string) {
	if _, ok := h.speakers[room]; !ok {
		return
	}
	for _, c := range h.live {
		if c.s.Room == room {
			return
		}
	}
	delete(h.speakers, room)
}

// tellSpeakers hands the loop the room's latest ranking of speakers.
func (c *conn) tellSpeakers(ranked []audiolevel.Speaker) {
	c.speakers.Store(&ranked)
	select {
	case c.speakersNew <- struct{}{}:
	default:
	}
}

// sendQueue bounds the messages waiting for a slow client; a client that falls this far behind
// loses its socket (and may resume) rather than being buffered without bound.
const sendQueue = 256

// socket is one WebSocket. A session uses one at a time; a resume hands it a new one.
type socket struct {
	ws   *websocket.Conn
	send chan ServerMessage

	once sync.Once
	gone chan struct{} // closed when the socket is let go: no more sends
	// status and reason of the close, set before gone is closed.
	status websocket.StatusCode
	reason string
}

func newSocket(ws *websocket.Conn) *socket {
	return &socket{ws: ws, send: make(chan ServerMessage, sendQueue), gone: make(chan struct{})}
}

// release lets the socket go; its writer sends what is queued and it closes with status.
// Idempotent: the first call's status wins.
func (s *socket) release(status websocket.StatusCode, reason string) {
	s.once.Do(func() {
		s.status, s.reason = status, reason
		close(s.gone)
	})
}

// enqueue hands messages to the writer in order; false if the client is too slow.
func (s *socket) enqueue(ms ...ServerMessage) bool {
	for _, m := range ms {
		select {
		case s.send <- m:
		default:
			return false
		}
	}
	return true
}

func (s *socket) writer() {
	for {
		select {
		case m := <-s.send:
			wctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			err := wsjson.Write(wctx, s.ws, m)
			cancel()
			if err != nil {
				return
			}
		case <-s.gone:
			// Drain what is queued (a final error or the leave's messages), then stop.
			for {
				select {
				case m := <-s.send:
					wctx, cancel := context.WithTimeout(context.Background(), time.Second)
					err := wsjson.Write(wctx, s.ws, m)
					cancel()
					if err != nil {
						return
					}
				default:
					return
				}
			}
		}
	}
}

func (s *socket) fail(code, format string, args ...any) {
	s.enqueue(errMsg(code, format, args...))
	s.release(websocket.StatusPolicyViolation, code)
}

func (s *socket) authFail(err error) {
	var ae *auth.Error
	if errors.As(err, &ae) {
		code := CodeUnauthorized
		if ae.Status() == http.StatusForbidden {
			code = CodeForbidden
		}
		s.fail(code, "%s", ae.Msg)
		return
	}
	s.fail(CodeUnauthorized, "%v", err)
}

// serve owns one WebSocket: it reads the join, starts or resumes a session, then feeds the
// session the socket's messages until the session lets the socket go or the socket fails.
func (h *Handler) serve(w http.ResponseWriter, r *http.Request) {
	ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{InsecureSkipVerify: true})
	if err != nil {
		return
	}
	ws.SetReadLimit(MaxPayload + 16<<10)
	sk := newSocket(ws)
	writerDone := make(chan struct{})
	go func() { defer close(writerDone); sk.writer() }()
	readerDone := make(chan struct{})
	if c := h.join(r, sk); c != nil {
		go func() { defer close(readerDone); c.pump(sk) }()
		select {
		case <-sk.gone:
		case <-c.done:
			// The session ended (a resume that raced its end is never answered: the client
			// retries and gets resume_expired).
			sk.release(websocket.StatusGoingAway, "session ended")
		}
	} else {
		close(readerDone)
	}
	<-sk.gone
	<-writerDone
	_ = ws.Close(sk.status, sk.reason)
	<-readerDone
}

// join handles the join message: the session the socket now serves, or nil (the socket was
// released with an error).
func (h *Handler) join(r *http.Request, sk *socket) *conn {
	reg := h.cfg.Sessions
	var join ClientMessage
	jctx, jcancel := context.WithTimeout(r.Context(), h.cfg.JoinTimeout)
	err := wsjson.Read(jctx, sk.ws, &join)
	jcancel()
	if err != nil {
		sk.release(websocket.StatusPolicyViolation, "no join")
		return nil
	}
	if join.Type != TypeJoin {
		sk.fail(CodeBadRequest, "the first message must be join, not %q", join.Type)
		return nil
	}
	if join.Version != Version {
		sk.fail(CodeBadRequest, "protocol version %d is not supported (this server speaks %d)", join.Version, Version)
		return nil
	}
	claims, err := h.cfg.Auth.Verify(join.Token, reg.Now())
	if err != nil {
		sk.authFail(err)
		return nil
	}
	room := join.Room
	if room == "" {
		room = claims.Room
	}
	if !events.ValidID(room) {
		sk.fail(CodeBadRequest, "room %q is not a valid id (1-64 of A-Z a-z 0-9 _ -)", room)
		return nil
	}
	if err := claims.Check(room, ""); err != nil {
		sk.authFail(err)
		return nil
	}
	if len(join.Metadata) > MaxMetadata {
		sk.fail(CodeBadRequest, "metadata has %d bytes, at most %d", len(join.Metadata), MaxMetadata)
		return nil
	}
	if reg.Closing() {
		sk.fail(CodeInternal, "server is shutting down")
		return nil
	}
	if join.Resume != "" {
		return h.resume(sk, room, claims, join.Resume)
	}
	if h.placed(r, sk) {
		return nil
	}
	return h.start(r, sk, room, claims, join)
}

// placed answers a new join that this node should not serve: a redirect to the node that
// should, or CodeFull when none can; true when it did (the socket was released).
func (h *Handler) placed(r *http.Request, sk *socket) bool {
	if h.cfg.Place == nil {
		return false
	}
	target, err := h.cfg.Place(r)
	switch {
	case err != nil:
		sk.fail(CodeFull, "%v: retry in a few seconds", err)
		return true
	case target == nil:
		return false
	}
	u := *target
	switch u.Scheme {
	case "https", "wss":
		u.Scheme = "wss"
	default:
		u.Scheme = "ws"
	}
	to := u.String()
	if len(to) > MaxRedirectURL {
		// The client's own query goes along; one this long is not worth carrying.
		sk.fail(CodeBadRequest, "the WebSocket URL's query is too long (%d bytes with the node's address, at most %d)", len(to), MaxRedirectURL)
		return true
	}
	h.log.Debug("join sent to another node", "url", to)
	sk.enqueue(ServerMessage{Type: TypeRedirect, URL: to})
	sk.release(websocket.StatusNormalClosure, "redirect")
	return true
}

// resume hands sk to the session the token names, if it still runs.
func (h *Handler) resume(sk *socket, room string, claims auth.Claims, token string) *conn {
	peer, _, _ := strings.Cut(token, ".")
	h.mu.Lock()
	c := h.live[peer]
	h.mu.Unlock()
	if c == nil {
		sk.fail(CodeResumeExpired, "no session to resume: it ended (left, failed or not resumed within the grace period): join again")
		return nil
	}
	if c.s.Room != room {
		sk.fail(CodeForbidden, "the session to resume is in another room")
		return nil
	}
	if !c.feed(input{resume: &resumeReq{sk: sk, claims: claims, token: token}}) {
		sk.fail(CodeResumeExpired, "the session ended: join again")
		return nil
	}
	return c
}

// resumeReq asks a session's loop to take a new socket.
type resumeReq struct {
	sk     *socket
	claims auth.Claims
	token  string
}

// newResumeToken is "<peer>.<128 random bits>": the peer finds the session, the secret proves
// the client got it from that session's joined.
func newResumeToken(peer string) string {
	return peer + "." + rand.Text()
}

// newPeerConnection is a session's PeerConnection, and its FastIngest when the edge's is on.
func (h *Handler) newPeerConnection() (*webrtc.PeerConnection, *rtc.FastIngest, error) {
	if h.cfg.Publishers != nil {
		return h.cfg.Publishers.NewPublisher()
	}
	pc, err := h.cfg.API.NewPeerConnection(webrtc.Configuration{})
	return pc, nil, err
}

// start creates a new session for a join and starts its loop.
func (h *Handler) start(r *http.Request, sk *socket, room string, claims auth.Claims, join ClientMessage) *conn {
	reg := h.cfg.Sessions
	pc, fast, err := h.newPeerConnection()
	if err != nil {
		sk.fail(CodeInternal, "new peer connection: %v", err)
		return nil
	}
	auto := join.AutoSubscribe == nil || *join.AutoSubscribe
	id := events.NewID()
	c := &conn{h: h, pc: pc, fast: fast, cur: sk, senders: map[string]*webrtc.RTPSender{}, stopped: map[string]*atomic.Bool{},
		simulcast: map[*webrtc.RTPTransceiver][]string{}, layered: map[*webrtc.RTPReceiver]TrackSpec{},
		in: make(chan input, 64), done: make(chan struct{}), speakersNew: make(chan struct{}, 1), behind: make(chan struct{}, 1)}
	c.core = NewCore(h.cfg.Timeouts, room, id, reg.Node(), claims, auto)
	opts := JoinOptions{Metadata: join.Metadata, Limits: h.cfg.Limits}
	if h.cfg.ResumeGrace > 0 {
		opts.ResumeToken, opts.Grace = newResumeToken(id), h.cfg.ResumeGrace
	}
	c.core.SetJoinOptions(opts)
	c.s, err = reg.NewSession(rtc.SessionConfig{ID: id, Room: room, Transport: Transport, Identity: claims.Identity,
		PC: pc, Core: c.core, OnPLI: c.sendPLI, OnUnrecorded: c.unrecorded})
	if err != nil {
		_ = pc.Close()
		sk.fail(CodeInternal, "%v", err)
		return nil
	}
	// The loop ends when the session closes for any reason (leave, failure, grace over,
	// shutdown).
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.s.OnClose(c.cancel)
	c.s.OnClose(fast.Close)
	now := reg.Now()
	if err := c.stepWait(func() Output { return c.core.Joined(now, r.RemoteAddr, r.UserAgent()) }); err != nil {
		c.s.Step(func(rtc.Core) rtc.Output { return c.core.Shutdown(reg.Now()) })
		sk.fail(CodeInternal, "cannot record the join in the event log: %v", err)
		return nil
	}
	// The room's state.
	watcher, err := h.cfg.Rooms.Watch(c.ctx, room+".>")
	if err != nil {
		c.s.Step(func(rtc.Core) rtc.Output { return c.core.Shutdown(reg.Now()) })
		sk.fail(CodeInternal, "watch room: %v", err)
		return nil
	}
	c.cleanup = append(c.cleanup, func() { _ = watcher.Stop() })
	// Data messages to the room and to this peer.
	onData := func(m *nats.Msg) {
		var d DataMessage
		if json.Unmarshal(m.Data, &d) == nil {
			c.feed(input{data: &d})
		}
	}
	for _, subj := range []string{mediabus.DataRoomSubject(room), mediabus.DataPeerSubject(room, id)} {
		sub, err := h.cfg.Data.Subscribe(subj, onData)
		if err != nil {
			c.runCleanup()
			c.s.Step(func(rtc.Core) rtc.Output { return c.core.Shutdown(reg.Now()) })
			sk.fail(CodeInternal, "data subscription: %v", err)
			return nil
		}
		c.cleanup = append(c.cleanup, func() { _ = sub.Unsubscribe() })
	}
	pc.OnTrack(func(tr *webrtc.TrackRemote, rcv *webrtc.RTPReceiver) { c.feed(input{track: tr, rcv: rcv}) })
	// The server trickles its candidates; the loop sends them, so they follow the offer or
	// answer they belong to.
	pc.OnICECandidate(func(ic *webrtc.ICECandidate) {
		if ic != nil {
			c.feed(input{cand: ic})
		}
	})
	h.mu.Lock()
	h.live[id] = c
	if h.rooms[room] == nil {
		h.rooms[room] = map[*conn]struct{}{}
	}
	h.rooms[room][c] = struct{}{}
	if sp := h.speakers[c.s.Room]; sp != nil {
		c.tellSpeakers(sp)
	}
	h.mu.Unlock()
	c.s.Started("remote", r.RemoteAddr, "resumable", opts.ResumeToken != "")
	reg.Go(func() { c.loop(watcher) })
	return c
}

// conn is one session: its core, PeerConnection and the socket it currently uses. Its loop
// owns everything below (the socket, negotiation state); other goroutines only feed it.
type conn struct {
	h    *Handler
	s    *rtc.Session
	core *Core
	pc   *webrtc.PeerConnection
	// fast takes the RTP the client publishes off the edge's socket (nil: pion's path only).
	fast *rtc.FastIngest
	// keys sends keyframe requests to the client for the tracks it publishes.
	keys rtc.Keyframes

	ctx     context.Context
	cancel  context.CancelFunc
	in      chan input
	done    chan struct{} // closed when the loop has ended
	cleanup []func()

	// cur is the socket messages go to; nil while detached.
	cur *socket
	// slow: the current socket's queue overflowed during a step.
	slow bool

	// Negotiation state, touched only by the loop.
	needOffer bool // our tracks changed since the last offer
	// lastOffer is the SDP of the last offer sent, resent as is after a resume (pion builds
	// LocalDescription anew each call, candidates of several interfaces in any order).
	lastOffer string
	senders   map[string]*webrtc.RTPSender
	// stopped: per published track, set on unpublish so its RTP stops going out.
	stopped map[string]*atomic.Bool
	// simulcast: the layers each receiving transceiver asks for (its offers say so);
	// layered: a simulcast track by its receiver, once its first layer arrived.
	simulcast map[*webrtc.RTPTransceiver][]string
	layered   map[*webrtc.RTPReceiver]TrackSpec
	// ended mirrors the core's Closed after each step (the core itself is read only under
	// the session lock).
	ended bool
	// speakers is the room's latest ranking of speakers, waiting for the loop; speakersNew
	// (cap 1) wakes it. Only the latest counts, so the hub that tells it never blocks.
	speakers    atomic.Pointer[[]audiolevel.Speaker]
	speakersNew chan struct{}
	// seen is the bucket sequence of the newest entry the session's room watch delivered;
	// written, the newest write of the room's record the node's watch saw (RoomWritten);
	// behind (cap 1) wakes the watch's goroutine when written passed seen (roomwatch.go).
	seen, written atomic.Uint64
	behind        chan struct{}
}

// input is one thing for the loop. sock names the socket a message or error came from.
type input struct {
	sock   *socket
	msg    *ClientMessage
	err    error
	resume *resumeReq
	kv     jetstream.KeyValueEntry
	ready  bool
	// resync: the room's watch was replaced, its initial state follows; resynced: it is in.
	resync, resynced bool
	data             *DataMessage
	track            *webrtc.TrackRemote
	rcv              *webrtc.RTPReceiver // track's
	speakers         *[]audiolevel.Speaker
	cand             *webrtc.ICECandidate
	layers           bool // time to report which layers of the client's simulcast tracks are watched
}

// layersEvery is how often a session reports which layers of its client's simulcast tracks
// anyone receives (Core.LayersWatched): a paused layer a viewer asks for resumes within it.
const layersEvery = 500 * time.Millisecond

// reportLayers tells the core which layers of each simulcast track the client publishes are
// received anywhere (this node's viewers or NATS interest from other nodes).
func (c *conn) reportLayers(now time.Time) {
	for _, spec := range c.layered {
		if len(spec.Layers) < 2 {
			continue
		}
		if s := c.stopped[spec.Track]; s != nil && s.Load() {
			c.core.ForgetLayers(spec.Track)
			continue
		}
		watched := make([]string, 0, len(spec.Layers))
		for _, l := range spec.Layers {
			if c.h.cfg.Bus.Watched(c.s.Room, spec.Track, l) {
				watched = append(watched, l)
			}
		}
		c.step(func() Output { return c.core.LayersWatched(now, spec.Track, spec.Layers, watched) })
	}
}

// feed hands i to the loop; false once the session has ended.
func (c *conn) feed(i input) bool {
	select {
	case c.in <- i:
		return true
	case <-c.ctx.Done():
		return false
	}
}

// pump reads sk's client messages into the loop until the socket fails or the session ends.
func (c *conn) pump(sk *socket) {
	defer sk.release(websocket.StatusNormalClosure, "closed")
	for {
		var m ClientMessage
		if err := wsjson.Read(context.Background(), sk.ws, &m); err != nil {
			c.feed(input{sock: sk, err: err})
			return
		}
		if !c.feed(input{sock: sk, msg: &m}) {
			return
		}
	}
}

func (c *conn) runCleanup() {
	for _, fn := range c.cleanup {
		fn()
	}
	c.cleanup = nil
}

// loop runs the session until it closes (leave, PeerConnection failure, grace over, shutdown).
func (c *conn) loop(watcher jetstream.KeyWatcher) {
	var wg sync.WaitGroup
	defer func() {
		// The session's end (its leave recorded) comes before the socket goes: a client that
		// waits for the socket to close after its leave finds the leave in the log.
		<-c.s.Done()
		c.cancel()
		c.runCleanup()
		wg.Wait()
		c.finish()
	}()
	wg.Add(1)
	go func() {
		defer wg.Done()
		c.watch(watcher)
	}()
	layersTick := time.NewTicker(layersEvery)
	defer layersTick.Stop()
	for {
		var i input
		select {
		case <-c.ctx.Done():
			// Closed by leave, PeerConnection failure, the grace's end or shutdown.
			return
		case i = <-c.in:
		case <-c.speakersNew:
			i = input{speakers: c.speakers.Swap(nil)}
		case <-layersTick.C:
			i = input{layers: true}
		}
		now := c.h.cfg.Sessions.Now()
		c.handle(now, i)
		if c.slow && !c.ended {
			c.detach(now, "too slow")
		}
		if c.ended {
			return
		}
		if c.cur != nil && c.needOffer && c.pc.SignalingState() == webrtc.SignalingStateStable {
			c.offer()
		}
	}
}

// watchStall is how long a room watch may stay silent before its initial values are done
// until the session takes what it has as the room's state. nats.go marks the initial values
// done once as many entries arrived as its consumer counted pending when it was made; an ended
// key's delete marker that expires (the rooms bucket keeps them a minute) after that count
// but before delivery never arrives, and the mark never comes. Every entry that still exists
// has been delivered by then (the consumer goes in order and only skips the expired ones);
// anything later still arrives as a change.
const watchStall = 2 * time.Second

// handle is the loop's step for one input.
func (c *conn) handle(now time.Time, i input) {
	switch {
	case i.resume != nil:
		c.resume(now, i.resume)
	case i.sock != nil && i.sock != c.cur:
		// From a socket the session no longer uses (replaced by a resume).
	case i.err != nil:
		c.detach(now, "closed")
	case i.ready:
		c.step(func() Output { return c.core.KVReady(now) })
	case i.resync:
		c.step(func() Output { return c.core.KVResync(now) })
	case i.resynced:
		c.step(func() Output { return c.core.KVResynced(now) })
	case i.kv != nil:
		e := i.kv
		if e.Operation() == jetstream.KeyValuePut {
			c.step(func() Output { return c.core.KVPut(now, e.Key(), e.Value()) })
		} else {
			c.step(func() Output { return c.core.KVDeleted(now, e.Key()) })
		}
	case i.data != nil:
		c.step(func() Output { return c.core.DataReceived(now, *i.data) })
	case i.speakers != nil:
		c.step(func() Output { return c.core.Speakers(now, *i.speakers) })
	case i.layers:
		c.reportLayers(now)
	case i.track != nil:
		c.published(i.track, i.rcv)
	case i.cand != nil:
		c.sendCandidate(i.cand)
	case i.msg != nil:
		c.message(now, *i.msg)
	}
}

// finish is the loop's end: the session is no longer resumable, its socket goes, and sockets
// handed over after the end are told so.
func (c *conn) finish() {
	c.h.mu.Lock()
	if c.h.live[c.s.ID] == c {
		delete(c.h.live, c.s.ID)
	}
	if in := c.h.rooms[c.s.Room]; in != nil {
		delete(in, c)
		if len(in) == 0 {
			delete(c.h.rooms, c.s.Room)
		}
	}
	c.h.forgetSpeakers(c.s.Room)
	c.h.mu.Unlock()
	switch {
	case c.cur == nil:
	case c.s.EndReason() == rtc.ReasonEndedInLog:
		// The client must join again, as after a resume that came too late.
		c.cur.enqueue(errMsg(CodeResumeExpired, "%s: join again", endedInLog))
		c.cur.release(websocket.StatusGoingAway, endedInLog)
	default:
		c.cur.release(websocket.StatusNormalClosure, "left")
	}
	close(c.done)
	for {
		select {
		case i := <-c.in:
			if i.resume != nil {
				i.resume.sk.fail(CodeResumeExpired, "the session ended: join again")
			}
		default:
			return
		}
	}
}

// endedInLog is the close reason of a socket whose session the log ended (its node was taken
// for lost while it still served it).
const endedInLog = "ended in the log: node declared lost"

// detach lets the current socket go (it failed or its client was too slow); the core decides
// whether the session waits for a resume.
func (c *conn) detach(now time.Time, reason string) {
	c.slow = false
	if c.cur == nil {
		return
	}
	c.cur.release(websocket.StatusGoingAway, reason)
	c.cur = nil
	c.step(func() Output { return c.core.SocketClosed(now) })
	if !c.ended {
		c.s.Log.Info("socket gone: waiting for a resume", "reason", reason)
	}
}

// resume gives the session a new socket, if the core accepts the resume.
func (c *conn) resume(now time.Time, req *resumeReq) {
	prev := c.cur
	c.cur = req.sk
	var ok bool
	c.step(func() Output {
		out, accepted := c.core.Resume(now, req.claims, req.token)
		ok = accepted
		return out
	})
	if !ok {
		c.cur = prev
		req.sk.release(websocket.StatusPolicyViolation, "resume refused")
		return
	}
	if prev != nil {
		prev.release(websocket.StatusNormalClosure, "resumed on another connection")
	}
	c.s.Log.Info("session resumed")
	// An offer the client may not have seen goes again; the client answers it on the new
	// socket.
	if c.pc.SignalingState() == webrtc.SignalingStateHaveLocalOffer && c.lastOffer != "" {
		c.send(ServerMessage{Type: TypeOffer, SDP: c.lastOffer})
	}
}

// send queues messages for the current socket (dropped while detached: a resume brings a fresh
// snapshot).
func (c *conn) send(ms ...ServerMessage) {
	if c.cur != nil && !c.cur.enqueue(ms...) {
		c.slow = true
	}
}

func (c *conn) sendCandidate(ic *webrtc.ICECandidate) {
	ci := ic.ToJSON()
	if ci.SDPMid == nil || *ci.SDPMid == "" {
		mid := "0"
		for _, tr := range c.pc.GetTransceivers() {
			if tr.Mid() != "" {
				mid = tr.Mid()
				break
			}
		}
		ci.SDPMid = &mid
	}
	if ci.SDPMLineIndex == nil {
		var zero uint16
		ci.SDPMLineIndex = &zero
	}
	b, err := json.Marshal(ci)
	if err != nil {
		return
	}
	c.send(ServerMessage{Type: TypeCandidate, Candidate: b})
}

// step feeds one input to the core through the session (whose outbox appends the events and
// sends the PLIs) and carries out the rest of its output.
func (c *conn) step(in func() Output) { c.apply(c.input(in, false)) }

// stepWait is step for an input whose events must be in the log before it returns: the join.
func (c *conn) stepWait(in func() Output) error {
	out, err := c.input(in, true)
	c.apply(out, nil)
	return err
}

// input runs in on the core under the session's lock: the client's messages are queued there,
// so they leave in the order the core made them.
func (c *conn) input(in func() Output, wait bool) (Output, error) {
	var out Output
	f := func(rtc.Core) rtc.Output {
		out = in()
		c.ended = c.core.Closed()
		c.send(out.Send...)
		return out.Output
	}
	if wait {
		err := c.s.StepWait(f)
		return out, err
	}
	c.s.Step(f)
	return out, nil
}

// unrecorded runs on the session's goroutine when the log refused events of an input nobody
// waited for: never silently, the client learns its change was not recorded.
func (c *conn) unrecorded(_ *rtc.Session, evs []events.Payload, err error) {
	now := c.h.cfg.Sessions.Now()
	c.s.Step(func(rtc.Core) rtc.Output {
		o := c.core.Unrecorded(now, evs, err)
		c.send(o.Send...)
		return o.Output
	})
}

// apply carries out what the core asked of the shell beyond the session's outbox: data
// messages, tracks to forward or stop, transceivers to add.
func (c *conn) apply(out Output, _ error) {
	for _, d := range out.Data {
		b, merr := json.Marshal(d)
		if merr != nil {
			continue
		}
		subj := mediabus.DataRoomSubject(c.s.Room)
		if d.To != "" {
			subj = mediabus.DataPeerSubject(c.s.Room, d.To)
		}
		if perr := c.h.cfg.Data.Publish(subj, b); perr != nil {
			c.send(errMsg(CodeInternal, "data not sent: %v", perr))
		}
	}
	for _, t := range out.Subscribe {
		c.subscribe(t)
	}
	for _, t := range out.Unsubscribe {
		c.unsubscribe(t)
	}
	for _, l := range out.Layers {
		c.chooseLayer(l)
	}
	for _, t := range out.Unpublished {
		if s := c.stopped[t]; s != nil {
			s.Store(true)
		}
	}
	for _, kind := range out.Receive {
		k := webrtc.NewRTPCodecType(kind)
		tx, err := c.pc.AddTransceiverFromKind(k, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly})
		if err != nil {
			c.send(errMsg(CodeInternal, "cannot receive %s: %v", kind, err))
			continue
		}
		if out.ReceiveCodec != "" {
			if err := rtc.PreferCodec(tx, out.ReceiveCodec); err != nil {
				_ = tx.Stop()
				c.send(errMsg(CodeBadRequest, "cannot receive %s: %v", kind, err))
				continue
			}
		}
		if len(out.ReceiveLayers) > 0 && k == webrtc.RTPCodecTypeVideo {
			c.simulcast[tx] = out.ReceiveLayers
		}
		c.needOffer = true
	}
}

// message handles one client message after join.
func (c *conn) message(now time.Time, m ClientMessage) {
	switch m.Type {
	case TypeOffer:
		c.answer(m.SDP)
	case TypeAnswer:
		if c.pc.SignalingState() != webrtc.SignalingStateHaveLocalOffer {
			c.send(errMsg(CodeBadRequest, "answer without an offer"))
			return
		}
		if err := c.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: m.SDP}); err != nil {
			c.send(errMsg(CodeBadRequest, "answer rejected: %v", err))
		}
		c.s.Log.Debug("client answer applied")
	case TypeCandidate:
		var ci webrtc.ICECandidateInit
		if err := json.Unmarshal(m.Candidate, &ci); err != nil {
			c.send(errMsg(CodeBadRequest, "candidate: %v", err))
			return
		}
		if err := c.pc.AddICECandidate(ci); err != nil {
			c.send(errMsg(CodeBadRequest, "candidate rejected: %v", err))
		}
	default:
		c.step(func() Output { return c.core.Message(now, m) })
	}
}

// answer applies a client offer. A client offer that crosses ours is ignored (the server is the
// impolite side; pion cannot roll a local offer back, so the Go SDK never offers: publish makes
// the server offer a receiving m-line that the client's sending transceiver takes).
func (c *conn) answer(sdp string) {
	if c.pc.SignalingState() == webrtc.SignalingStateHaveLocalOffer {
		c.s.Log.Debug("client offer ignored: it crossed ours")
		return
	}
	c.s.Log.Debug("answering client offer")
	c.negotiating()
	ans, err := rtc.Answer(context.Background(), c.pc, sdp, nil)
	if err != nil {
		c.send(errMsg(CodeBadRequest, "%v", err))
		return
	}
	c.send(ServerMessage{Type: TypeAnswer, SDP: ans})
}

// negotiating starts the connect timeout once media is negotiated (a peer that only uses data
// never negotiates and never times out).
func (c *conn) negotiating() {
	now := c.h.cfg.Sessions.Now()
	c.step(func() Output { c.core.Negotiating(now); return Output{} })
}

// offer sends a server offer (tracks to forward were added or removed).
func (c *conn) offer() {
	c.needOffer = false
	c.negotiating()
	o, err := c.pc.CreateOffer(nil)
	if err != nil {
		c.s.Log.Error("create offer", "err", err)
		return
	}
	gathered := webrtc.GatheringCompletePromise(c.pc)
	if err := c.pc.SetLocalDescription(o); err != nil {
		c.s.Log.Error("set offer", "err", err)
		return
	}
	select {
	case <-gathered:
	case <-time.After(5 * time.Second):
	}
	c.s.Log.Debug("offer sent", "transceivers", len(c.pc.GetTransceivers()))
	// pion refuses a local description other than the offer it made, so the request to
	// receive simulcast goes only into what the client gets; pion reads the layers from the
	// client's answer.
	c.lastOffer = rtc.OfferSimulcast(c.pc.LocalDescription().SDP, c.simulcastMids())
	c.send(ServerMessage{Type: TypeOffer, SDP: c.lastOffer})
}

// published starts moving a client track's RTP onto its media subject, if announced. The core
// asks for its first keyframe and throttles the viewers' requests.
func (c *conn) published(tr *webrtc.TrackRemote, rcv *webrtc.RTPReceiver) {
	if spec, ok := c.layered[rcv]; ok { // a further layer of a simulcast track
		c.publishedLayer(tr, rcv, spec)
		return
	}
	codec := tr.Codec()
	var src rtc.RTPReader = tr
	if tr.RID() != "" { // pion names a layer's codec only after its first packet is read
		codec, src = rtc.PeekCodec(tr, peekCodecWait)
	}
	spec := TrackSpec{Track: events.NewID(), Peer: c.s.ID, Kind: tr.Kind().String(), Codec: codec.MimeType,
		ClockRate: codec.ClockRate, Channels: codec.Channels, FmtpLine: codec.SDPFmtpLine}
	if tr.RID() != "" {
		spec.Layers = c.layersOf(rcv, tr.RID())
		if !slices.Contains(spec.Layers, tr.RID()) {
			return
		}
	}
	reg := c.h.cfg.Sessions
	c.keys.Add(spec.Track, tr.RID(), tr.SSRC())
	now := reg.Now()
	var ok bool
	c.step(func() Output {
		out, accepted := c.core.TrackStarted(now, spec)
		ok = accepted
		return out
	})
	if !ok {
		return
	}
	bus := c.h.cfg.Bus
	sub, err := bus.SubscribeFeedback(c.s.Room, spec.Track, func(layer string, data []byte) {
		if rtc.IsKeyframeRequest(data) {
			now, key := reg.Now(), rtc.LayerKey(spec.Track, layer)
			c.s.Step(func(rtc.Core) rtc.Output { return c.core.KeyframeRequested(now, key) })
		}
	})
	if err != nil {
		c.s.Log.Error("feedback subscription failed", "track", spec.Track, "err", err)
	} else {
		c.s.OnClose(func() { _ = sub.Unsubscribe() })
	}
	c.s.Log.Debug("track published", "track", spec.Track, "kind", spec.Kind, "codec", spec.Codec)
	stopped := &atomic.Bool{}
	c.stopped[spec.Track] = stopped
	layer := rtc.SingleLayer
	if tr.RID() != "" {
		layer = tr.RID()
		c.layered[rcv] = spec
	}
	var sender rtc.RTPSender = bus.Sender(c.s.Room, spec.Track, layer)
	if tr.Kind() == webrtc.RTPCodecTypeAudio {
		sender = c.h.cfg.Levels.Tap(c.s, spec.Track, rtc.AudioLevelID(rcv.GetParameters()), sender)
	}
	rtc.EndReadsOnClose(c.s, tr, rcv)
	sender = c.fastIngest(tr, spec.Track, sender, stopped)
	reg.Go(func() { rtc.ReadRTP(src, sender, stopped, nil) })
	reg.Go(func() { rtc.ReadPublisherRTCP(rcv, tr.RID()) })
}

// fastIngest hands a published layer's RTP to the session's FastIngest, if any, and
// returns the sender ReadRTP must use: it still reads what pion has and what the fast path
// leaves.
func (c *conn) fastIngest(tr *webrtc.TrackRemote, track string, sender rtc.RTPSender, stopped *atomic.Bool) rtc.RTPSender {
	sender, err := c.fast.Publish(c.pc, tr.SSRC(), sender, stopped, nil)
	if err != nil && !errors.Is(err, rtc.ErrSessionClosed) {
		c.s.Log.Warn("layer read through pion: no fast ingest", "track", track, "rid", tr.RID(), "err", err)
	}
	return sender
}

// peekCodecWait bounds the wait for a simulcast layer's first packet, which names its codec
// (pion fires OnTrack for a layer on its first packet, so the wait is normally none).
const peekCodecWait = 2 * time.Second

// publishedLayer starts moving a further simulcast layer of a published track.
func (c *conn) publishedLayer(tr *webrtc.TrackRemote, rcv *webrtc.RTPReceiver, spec TrackSpec) {
	if !slices.Contains(spec.Layers, tr.RID()) {
		c.s.Log.Warn("simulcast layer not offered, ignored", "track", spec.Track, "rid", tr.RID())
		return
	}
	c.keys.Add(spec.Track, tr.RID(), tr.SSRC())
	// The layer's first keyframe may have gone before anyone listened.
	now, key := c.h.cfg.Sessions.Now(), rtc.LayerKey(spec.Track, tr.RID())
	c.s.Step(func(rtc.Core) rtc.Output { return c.core.KeyframeRequested(now, key) })
	stopped := c.stopped[spec.Track]
	rtc.EndReadsOnClose(c.s, tr, rcv)
	sender := c.fastIngest(tr, spec.Track, c.h.cfg.Bus.Sender(c.s.Room, spec.Track, tr.RID()), stopped)
	c.h.cfg.Sessions.Go(func() { rtc.ReadRTP(tr, sender, stopped, nil) })
	c.h.cfg.Sessions.Go(func() { rtc.ReadPublisherRTCP(rcv, tr.RID()) })
}

// layersOf are the layers the offers asked rcv's transceiver for ([rid] when unknown).
func (c *conn) layersOf(rcv *webrtc.RTPReceiver, rid string) []string {
	for tx, layers := range c.simulcast {
		if tx.Receiver() == rcv {
			return layers
		}
	}
	return []string{rid}
}

// simulcastMids are the simulcast layers of the receiving transceivers, by mid.
func (c *conn) simulcastMids() map[string][]string {
	out := map[string][]string{}
	for tx, layers := range c.simulcast {
		if mid := tx.Mid(); mid != "" && tx.Direction() == webrtc.RTPTransceiverDirectionRecvonly {
			out[mid] = layers
		}
	}
	return out
}

// subscribe adds a track forwarding t to the client; the next offer carries it.
func (c *conn) subscribe(t TrackSpec) {
	lt := c.subTrack(t)
	tx, err := c.pc.AddTransceiverFromTrack(lt, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
	if err != nil {
		c.send(errMsg(CodeInternal, "cannot forward %s track %s: %v", t.Kind, t.Track, err))
		return
	}
	sender := tx.Sender()
	c.s.Log.Debug("forwarding track", "track", t.Track, "publisher", t.Peer)
	c.senders[t.Track] = sender
	c.needOffer = true
	c.h.cfg.Sessions.Go(func() { lt.ReadRTCP(sender) })
}

// chooseLayer passes a client's layer choice to the track it is for.
func (c *conn) chooseLayer(l LayerChoice) {
	sender, ok := c.senders[l.Track]
	if !ok {
		return
	}
	lc, ok := sender.Track().(LayerChooser)
	if !ok {
		return
	}
	if err := lc.ChooseLayer(l.Quality, l.Width, l.Height); err != nil {
		c.send(errMsg(CodeInternal, "layer of track %s not changed: %v", l.Track, err))
	}
}

func (c *conn) unsubscribe(track string) {
	sender, ok := c.senders[track]
	if !ok {
		return
	}
	delete(c.senders, track)
	if err := c.pc.RemoveTrack(sender); err != nil {
		c.s.Log.Debug("remove track", "track", track, "err", err)
	}
	c.needOffer = true
}
