package signal

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"github.com/coder/websocket/wsjson"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"

	"github.com/jetmedia/jetmedia/events"
	"github.com/jetmedia/jetmedia/pipeline"
	"github.com/jetmedia/jetmedia/pipeline/auth"
	"github.com/jetmedia/jetmedia/pipeline/rtc"
)

// Verifier checks a join's token; *auth.Keyring is one.
type Verifier interface {
	Verify(token string, now time.Time) (auth.Claims, error)
}

// Deliverer makes the pion track that carries one published track to one client: onBound runs
// once packets flow to it, onKeyframeRequest for the client's PLI and FIR. Egress provides it
// (a forward.Track on the node's hub), wired by cmd, because ingress may not import egress.
type Deliverer func(room string, spec TrackSpec, onBound, onKeyframeRequest func()) DeliveredTrack

// DeliveredTrack is a pion TrackLocal fed by the node's fan-out of a published track.
type DeliveredTrack interface {
	webrtc.TrackLocal
	// ReadRTCP answers the client's feedback until the sender stops.
	ReadRTCP(sender *webrtc.RTPSender)
	// Detach stops the packets to the client; idempotent.
	Detach()
}

// Config wires a Handler.
type Config struct {
	API      *webrtc.API
	Sessions *rtc.Registry
	Bus      *pipeline.MediaBus
	Deliver  Deliverer
	// Rooms is the rooms KV bucket the session watches for the room's state.
	Rooms jetstream.KeyValue
	// Data carries data messages on dm.<room>[.<peer>] (core NATS).
	Data *nats.Conn
	Auth Verifier
	// Path is where the WebSocket is served (default "/rtc").
	Path string
	// JoinTimeout bounds the wait for the first message (default 10 s).
	JoinTimeout time.Duration
	Logger      *slog.Logger
}

// Handler serves the signalling WebSocket.
type Handler struct {
	cfg Config
	log *slog.Logger
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
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Handler{cfg: cfg, log: cfg.Logger.With("component", "signal")}, nil
}

// Register adds the WebSocket route to mux.
func (h *Handler) Register(mux *http.ServeMux) { mux.HandleFunc("GET "+h.cfg.Path, h.serve) }

// sendQueue bounds the messages waiting for a slow client; a client that falls this far behind
// is disconnected rather than buffered without bound.
const sendQueue = 256

func (h *Handler) serve(w http.ResponseWriter, r *http.Request) {
	ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{InsecureSkipVerify: true})
	if err != nil {
		return
	}
	ws.SetReadLimit(MaxPayload + 16<<10)
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	c := &conn{h: h, ws: ws, send: make(chan ServerMessage, sendQueue), done: make(chan struct{})}
	writerDone := make(chan struct{})
	go func() { defer close(writerDone); c.writer(ctx) }()
	status, reason := c.run(ctx, r)
	close(c.done)
	<-writerDone
	_ = ws.Close(status, reason)
}

// conn is one WebSocket and, once joined, its session.
type conn struct {
	h    *Handler
	ws   *websocket.Conn
	send chan ServerMessage
	done chan struct{} // closed when run returns: no more sends

	s    *rtc.Session
	core *Core
	pc   *webrtc.PeerConnection

	// Negotiation state, touched only by run's goroutine.
	needOffer bool // our tracks changed since the last offer
	senders   map[string]*webrtc.RTPSender
	// stopped: per published track, set on unpublish so its RTP stops going out.
	stopped map[string]*atomic.Bool
	// ended mirrors the core's Closed after each step (the core itself is read only under
	// the session lock).
	ended bool
}

func (c *conn) writer(ctx context.Context) {
	for {
		select {
		case m := <-c.send:
			wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			err := wsjson.Write(wctx, c.ws, m)
			cancel()
			if err != nil {
				return
			}
		case <-c.done:
			// Drain what is queued (a final error or the leave's messages), then stop.
			for {
				select {
				case m := <-c.send:
					wctx, cancel := context.WithTimeout(context.Background(), time.Second)
					err := wsjson.Write(wctx, c.ws, m)
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

// enqueue hands messages to the writer in order; false if the client is too slow.
func (c *conn) enqueue(ms ...ServerMessage) bool {
	for _, m := range ms {
		select {
		case c.send <- m:
		default:
			return false
		}
	}
	return true
}

// input is one thing for run's loop.
type input struct {
	msg   *ClientMessage
	kv    jetstream.KeyValueEntry
	ready bool
	data  *DataMessage
	track *webrtc.TrackRemote
	err   error
}

func (c *conn) run(ctx context.Context, r *http.Request) (websocket.StatusCode, string) {
	h := c.h
	reg := h.cfg.Sessions
	var join ClientMessage
	jctx, jcancel := context.WithTimeout(ctx, h.cfg.JoinTimeout)
	err := wsjson.Read(jctx, c.ws, &join)
	jcancel()
	if err != nil {
		return websocket.StatusPolicyViolation, "no join"
	}
	if join.Type != TypeJoin {
		return c.fail(CodeBadRequest, "the first message must be join, not %q", join.Type)
	}
	if join.Version != Version {
		return c.fail(CodeBadRequest, "protocol version %d is not supported (this server speaks %d)", join.Version, Version)
	}
	claims, err := h.cfg.Auth.Verify(join.Token, reg.Now())
	if err != nil {
		return c.authFail(err)
	}
	room := join.Room
	if room == "" {
		room = claims.Room
	}
	if !events.ValidID(room) {
		return c.fail(CodeBadRequest, "room %q is not a valid id (1-64 of A-Z a-z 0-9 _ -)", room)
	}
	if err := claims.Check(room, ""); err != nil {
		return c.authFail(err)
	}
	if reg.Closing() {
		return c.fail(CodeInternal, "server is shutting down")
	}
	pc, err := h.cfg.API.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return c.fail(CodeInternal, "new peer connection: %v", err)
	}
	c.pc = pc
	c.senders = map[string]*webrtc.RTPSender{}
	auto := join.AutoSubscribe == nil || *join.AutoSubscribe
	id := events.NewID()
	c.core = NewCore(room, id, reg.Node(), claims, auto)
	log := h.log.With("room", room, "peer", id, "identity", claims.Identity)
	c.s = reg.NewSession(id, room, pc, c.core, log)
	c.s.Identity = claims.Identity
	// The loop ends when the session closes for any reason (leave, failure, shutdown).
	sctx, scancel := context.WithCancel(ctx)
	defer scancel()
	c.s.OnClose(scancel)
	if err := reg.Add(c.s); err != nil {
		_ = pc.Close()
		return c.fail(CodeInternal, "%v", err)
	}
	now := reg.Now()
	if err := c.step(func() Output { return c.core.Joined(now, r.RemoteAddr, r.UserAgent()) }); err != nil {
		c.s.Step(func(rtc.Core) rtc.Output { return c.core.Shutdown(reg.Now()) })
		return c.fail(CodeInternal, "cannot record the join in the event log: %v", err)
	}
	log.Info("peer joined")

	in := make(chan input, 64)
	feed := func(i input) bool {
		select {
		case in <- i:
			return true
		case <-sctx.Done():
			return false
		}
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	defer scancel()
	// Client messages.
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			var m ClientMessage
			if err := wsjson.Read(sctx, c.ws, &m); err != nil {
				feed(input{err: err})
				return
			}
			if !feed(input{msg: &m}) {
				return
			}
		}
	}()
	// The room's state.
	watcher, err := h.cfg.Rooms.Watch(sctx, room+".>")
	if err != nil {
		c.s.Step(func(rtc.Core) rtc.Output { return c.core.Shutdown(reg.Now()) })
		return c.fail(CodeInternal, "watch room: %v", err)
	}
	defer func() { _ = watcher.Stop() }()
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case e, ok := <-watcher.Updates():
				if !ok {
					return
				}
				if e == nil {
					if !feed(input{ready: true}) {
						return
					}
					continue
				}
				if !feed(input{kv: e}) {
					return
				}
			case <-sctx.Done():
				return
			}
		}
	}()
	// Data messages to the room and to this peer.
	onData := func(m *nats.Msg) {
		var d DataMessage
		if json.Unmarshal(m.Data, &d) == nil {
			feed(input{data: &d})
		}
	}
	for _, subj := range []string{pipeline.DataRoomSubject(room), pipeline.DataPeerSubject(room, id)} {
		sub, err := h.cfg.Data.Subscribe(subj, onData)
		if err != nil {
			c.s.Step(func(rtc.Core) rtc.Output { return c.core.Shutdown(reg.Now()) })
			return c.fail(CodeInternal, "data subscription: %v", err)
		}
		defer func() { _ = sub.Unsubscribe() }()
	}
	pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) { feed(input{track: tr}) })

	for {
		var i input
		select {
		case <-sctx.Done():
			// Closed by leave, PeerConnection failure or shutdown.
			return websocket.StatusNormalClosure, "left"
		case i = <-in:
		}
		now := reg.Now()
		switch {
		case i.err != nil:
			c.step(func() Output { return c.core.SocketClosed(now) })
			return websocket.StatusNormalClosure, "closed"
		case i.ready:
			c.step(func() Output { return c.core.KVReady(now) })
		case i.kv != nil:
			e := i.kv
			if e.Operation() == jetstream.KeyValuePut {
				c.step(func() Output { return c.core.KVPut(now, e.Key(), e.Value()) })
			} else {
				c.step(func() Output { return c.core.KVDeleted(now, e.Key()) })
			}
		case i.data != nil:
			c.step(func() Output { return c.core.DataReceived(now, *i.data) })
		case i.track != nil:
			c.published(i.track)
		case i.msg != nil:
			c.message(now, *i.msg)
		}
		if c.ended {
			return websocket.StatusNormalClosure, "left"
		}
		if c.needOffer && c.pc.SignalingState() == webrtc.SignalingStateStable {
			c.offer()
		}
	}
}

// step feeds one input to the core through the session (which appends the events) and carries
// out the rest of its output.
func (c *conn) step(in func() Output) error {
	var out Output
	err := c.s.StepErr(func(rtc.Core) rtc.Output {
		out = in()
		c.ended = c.core.Closed()
		// Queued under the session lock, so messages leave in the order the core made them.
		if !c.enqueue(out.Send...) {
			out.Close = true
		}
		return out.Output
	})
	if err != nil {
		c.s.Log.Error("session step failed", "err", err)
	}
	for _, d := range out.Data {
		b, merr := json.Marshal(d)
		if merr != nil {
			continue
		}
		subj := pipeline.DataRoomSubject(c.s.Room)
		if d.To != "" {
			subj = pipeline.DataPeerSubject(c.s.Room, d.To)
		}
		if perr := c.h.cfg.Data.Publish(subj, b); perr != nil {
			c.enqueue(errMsg(CodeInternal, "data not sent: %v", perr))
		}
	}
	for _, t := range out.Subscribe {
		c.subscribe(t)
	}
	for _, t := range out.Unsubscribe {
		c.unsubscribe(t)
	}
	for _, t := range out.Unpublished {
		if s := c.stopped[t]; s != nil {
			s.Store(true)
		}
	}
	for _, kind := range out.Receive {
		k := webrtc.NewRTPCodecType(kind)
		if _, err := c.pc.AddTransceiverFromKind(k, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
			c.enqueue(errMsg(CodeInternal, "cannot receive %s: %v", kind, err))
			continue
		}
		c.needOffer = true
	}
	return err
}

func (c *conn) fail(code, format string, args ...any) (websocket.StatusCode, string) {
	c.enqueue(errMsg(code, format, args...))
	return websocket.StatusPolicyViolation, code
}

func (c *conn) authFail(err error) (websocket.StatusCode, string) {
	var ae *auth.Error
	if errors.As(err, &ae) {
		code := CodeUnauthorized
		if ae.Status() == http.StatusForbidden {
			code = CodeForbidden
		}
		return c.fail(code, "%s", ae.Msg)
	}
	return c.fail(CodeUnauthorized, "%v", err)
}

// message handles one client message after join.
func (c *conn) message(now time.Time, m ClientMessage) {
	switch m.Type {
	case TypeOffer:
		c.answer(m.SDP)
	case TypeAnswer:
		if c.pc.SignalingState() != webrtc.SignalingStateHaveLocalOffer {
			c.enqueue(errMsg(CodeBadRequest, "answer without an offer"))
			return
		}
		if err := c.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: m.SDP}); err != nil {
			c.enqueue(errMsg(CodeBadRequest, "answer rejected: %v", err))
		}
		c.s.Log.Debug("client answer applied")
	case TypeCandidate:
		var ci webrtc.ICECandidateInit
		if err := json.Unmarshal(m.Candidate, &ci); err != nil {
			c.enqueue(errMsg(CodeBadRequest, "candidate: %v", err))
			return
		}
		if err := c.pc.AddICECandidate(ci); err != nil {
			c.enqueue(errMsg(CodeBadRequest, "candidate rejected: %v", err))
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
	ans, err := rtc.Answer(context.Background(), c.pc, sdp, nil)
	if err != nil {
		c.enqueue(errMsg(CodeBadRequest, "%v", err))
		return
	}
	c.enqueue(ServerMessage{Type: TypeAnswer, SDP: ans})
}

// offer sends a server offer (tracks to forward were added or removed).
func (c *conn) offer() {
	c.needOffer = false
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
	c.enqueue(ServerMessage{Type: TypeOffer, SDP: c.pc.LocalDescription().SDP})
}

// published starts moving a client track's RTP onto its media subject, if announced.
func (c *conn) published(tr *webrtc.TrackRemote) {
	codec := tr.Codec()
	spec := TrackSpec{Track: events.NewID(), Peer: c.s.ID, Kind: tr.Kind().String(), Codec: codec.MimeType,
		ClockRate: codec.ClockRate, Channels: codec.Channels, FmtpLine: codec.SDPFmtpLine}
	now := c.h.cfg.Sessions.Now()
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
	ssrc := tr.SSRC()
	var plimu sync.Mutex
	var lastPLI time.Time
	sub, err := bus.SubscribeFeedback(c.s.Room, spec.Track, func(data []byte) {
		if !isKeyframeRequest(data) {
			return
		}
		plimu.Lock()
		now := time.Now()
		if now.Sub(lastPLI) < 300*time.Millisecond {
			plimu.Unlock()
			return
		}
		lastPLI = now
		plimu.Unlock()
		_ = c.pc.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: uint32(ssrc)}})
	})
	if err == nil {
		c.s.OnClose(func() { _ = sub.Unsubscribe() })
	}
	if spec.Kind == "video" {
		_ = c.pc.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: uint32(ssrc)}})
	}
	c.s.Log.Info("track published", "track", spec.Track, "kind", spec.Kind, "codec", spec.Codec)
	sender := bus.Sender(c.s.Room, spec.Track, "0")
	stopped := &atomic.Bool{}
	if c.stopped == nil {
		c.stopped = map[string]*atomic.Bool{}
	}
	c.stopped[spec.Track] = stopped
	c.h.cfg.Sessions.Go(func() {
		buf := make([]byte, 1500)
		for {
			n, _, err := tr.Read(buf)
			if err != nil {
				return
			}
			if stopped.Load() {
				continue // unpublished: drained, not forwarded
			}
			_ = sender.Send(buf[:n])
		}
	})
}

// subscribe adds a track forwarding t to the client; the next offer carries it.
func (c *conn) subscribe(t TrackSpec) {
	lt := c.subTrack(t)
	tx, err := c.pc.AddTransceiverFromTrack(lt, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
	if err != nil {
		c.enqueue(errMsg(CodeInternal, "cannot forward %s track %s: %v", t.Kind, t.Track, err))
		return
	}
	sender := tx.Sender()
	c.s.Log.Debug("forwarding track", "track", t.Track, "publisher", t.Peer)
	c.senders[t.Track] = sender
	c.needOffer = true
	c.h.cfg.Sessions.Go(func() { lt.ReadRTCP(sender) })
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

// isKeyframeRequest reports whether marshalled RTCP holds a PLI or FIR.
func isKeyframeRequest(data []byte) bool {
	pkts, err := rtcp.Unmarshal(data)
	if err != nil {
		return false
	}
	for _, p := range pkts {
		switch p.(type) {
		case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest:
			return true
		}
	}
	return false
}
