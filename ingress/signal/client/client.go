package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	neturl "net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"github.com/pion/webrtc/v4"

	"github.com/jetmedia/jetmedia/ingress/signal"
)

// Options tune a Join.
type Options struct {
	// API builds the PeerConnection (default: webrtc.NewAPI()).
	API *webrtc.API
	// Room overrides the token's room (needed for tokens valid in every room).
	Room string
	// Metadata is the peer's application metadata.
	Metadata string
	// ManualSubscribe turns auto-subscription off.
	ManualSubscribe bool
	// EventBuffer is the Events channel's capacity (default 256); events beyond it are dropped.
	EventBuffer int
	// Trace, if set, sees every message on the wire (fromServer tells the direction), for
	// debugging and for the tests that validate the protocol against its schemas.
	Trace func(fromServer bool, raw []byte)
	// ResumeWithin bounds how long the SDK keeps trying to resume after its WebSocket drops
	// (default 10 s, the server's default grace). Negative: never resume.
	ResumeWithin time.Duration
	// Logger gets a debug line for each redirect followed (nil: none).
	Logger *slog.Logger
}

// MaxRedirects is how many redirect messages (placement sending the join to another node) a
// Join follows before it fails.
const MaxRedirects = 3

// ErrTooManyRedirects: the servers sent a join on more than MaxRedirects times.
var ErrTooManyRedirects = errors.New("jetmedia: too many redirects")

// EventType says what an Event is about.
type EventType string

const (
	PeerJoined       EventType = signal.TypePeerJoined
	PeerLeft         EventType = signal.TypePeerLeft
	TrackPublished   EventType = signal.TypeTrackPublished
	TrackUnpublished EventType = signal.TypeTrackUnpublished
	Subscription     EventType = signal.TypeSubscription
	Data             EventType = signal.TypeData
	ErrorEvent       EventType = signal.TypeError
	PeerUpdated      EventType = signal.TypePeerUpdated
	TrackUpdated     EventType = signal.TypeTrackUpdated
	// Speakers: who speaks now changed (Event.Speakers, loudest first; empty: nobody).
	Speakers EventType = signal.TypeSpeakers
	// Reconnecting: the WebSocket dropped and the SDK is resuming the session; Reconnected:
	// it resumed (events for what changed meanwhile come right before it). If the session
	// cannot be resumed an ErrorEvent (code resume_expired, or resume_failed when the server
	// could not be reached) ends the room.
	Reconnecting EventType = "reconnecting"
	Reconnected  EventType = "reconnected"
)

// CodeResumeFailed is the ErrorEvent code when the server could not be reached again within
// ResumeWithin.
const CodeResumeFailed = "resume_failed"

// Event is something that happened in the room.
type Event struct {
	Type EventType
	// At is when the SDK received it.
	At    time.Time
	Peer  signal.PeerInfo
	Track signal.TrackInfo
	// State of a Subscription event: "active" or "ended".
	State string
	// From, To and Payload of a Data event (To is empty for a message to the whole room).
	From, To, Payload string
	// Code and Message of an Error event.
	Code, Message string
	// Speakers of a Speakers event, loudest first.
	Speakers []signal.SpeakerInfo
}

// Error is an error message from the server.
type Error struct{ Code, Message string }

func (e *Error) Error() string { return "jetmedia: " + e.Code + ": " + e.Message }

// Room is a joined room.
type Room struct {
	// Self is this peer as the room sees it; Grants are the token's.
	Self   signal.PeerInfo
	Name   string
	Grants []string
	// Peers and Tracks are the room when joined (later changes arrive as events; State has
	// the current view).
	Peers  []signal.PeerInfo
	Tracks []signal.TrackInfo

	url, token, roomOpt string
	resumeToken         string
	resumeWithin        time.Duration
	dropDelay           atomic.Int64 // nanoseconds to wait before resuming after DropConnection

	smu    sync.Mutex
	peers  map[string]signal.PeerInfo
	tracks map[string]signal.TrackInfo

	ws     *websocket.Conn // guarded by wmu; replaced by a resume
	pc     *webrtc.PeerConnection
	trace  func(bool, []byte)
	events chan Event
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	wmu sync.Mutex // one writer at a time on the WebSocket

	nmu sync.Mutex // negotiation

	pmu sync.Mutex
	// pending: senders published and not yet named by the server, in order; published: the
	// server's track id of each sender.
	pending   []*webrtc.RTPSender
	published map[*webrtc.RTPSender]string
	named     chan struct{} // closed and replaced whenever a track is named

	tmu     sync.Mutex
	onTrack func(*webrtc.TrackRemote, *webrtc.RTPReceiver)

	closeOnce sync.Once
	closing   atomic.Bool // Leave or Close: a dropped socket is not resumed
}

// Join connects to url (ws://host:port/rtc), joins with token and returns the room once the
// server has sent its snapshot. A rejected join returns an *Error (code full: no node has
// room, retry later). A redirect (placement) is followed: the same join goes to the node it
// names, at most MaxRedirects times (then ErrTooManyRedirects), and resumes go there.
func Join(ctx context.Context, url, token string, opts Options) (*Room, error) {
	if opts.API == nil {
		opts.API = webrtc.NewAPI()
	}
	if opts.EventBuffer == 0 {
		opts.EventBuffer = 256
	}
	if opts.ResumeWithin == 0 {
		opts.ResumeWithin = 10 * time.Second
	}
	url = strings.Replace(strings.Replace(url, "http://", "ws://", 1), "https://", "wss://", 1)
	auto := !opts.ManualSubscribe
	join := signal.ClientMessage{Type: signal.TypeJoin, Version: signal.Version, Token: token, Room: opts.Room,
		Metadata: opts.Metadata, AutoSubscribe: &auto}
	ws, m, url, err := dialPlaced(ctx, url, opts, join)
	if err != nil {
		return nil, err
	}
	pc, err := opts.API.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		_ = ws.CloseNow()
		return nil, fmt.Errorf("jetmedia: peer connection: %w", err)
	}
	rctx, cancel := context.WithCancel(context.Background())
	r := &Room{Self: *m.Self, Name: m.Room, Grants: m.Grants, Peers: m.Peers, Tracks: m.Tracks,
		url: url, token: token, roomOpt: opts.Room, resumeToken: m.ResumeToken, resumeWithin: opts.ResumeWithin,
		peers: map[string]signal.PeerInfo{}, tracks: map[string]signal.TrackInfo{},
		published: map[*webrtc.RTPSender]string{}, named: make(chan struct{}),
		ws: ws, pc: pc, trace: opts.Trace, events: make(chan Event, opts.EventBuffer), ctx: rctx, cancel: cancel}
	for _, p := range m.Peers {
		r.peers[p.Peer] = p
	}
	for _, t := range m.Tracks {
		r.tracks[t.Track] = t
	}
	pc.OnTrack(func(tr *webrtc.TrackRemote, rc *webrtc.RTPReceiver) {
		r.tmu.Lock()
		fn := r.onTrack
		r.tmu.Unlock()
		if fn != nil {
			fn(tr, rc)
		}
	})
	r.wg.Add(1)
	go r.read()
	return r, nil
}

// dialPlaced joins at url, following the servers' redirects (at most MaxRedirects); it
// returns the socket, the joined and the URL of the node that took the join (resumes go there).
func dialPlaced(ctx context.Context, url string, opts Options, join signal.ClientMessage) (*websocket.Conn, signal.ServerMessage, string, error) {
	for redirects := 0; ; redirects++ {
		ws, m, err := dialJoin(ctx, url, opts.Trace, join)
		if err == nil || m.Type != signal.TypeRedirect {
			return ws, m, url, err
		}
		if redirects == MaxRedirects {
			return nil, m, url, fmt.Errorf("%w: the join was sent on %d times (last to %s)", ErrTooManyRedirects, redirects+1, m.URL)
		}
		next, err := resolveRedirect(url, m.URL)
		if err != nil {
			return nil, m, url, err
		}
		if opts.Logger != nil {
			opts.Logger.Debug("jetmedia: join redirected", "from", url, "to", next)
		}
		url = next
	}
}

// resolveRedirect resolves a redirect's URL against the one the join used; only ws: and wss:
// (or http: and https:, taken as those) are followed.
func resolveRedirect(base, ref string) (string, error) {
	b, err := neturl.Parse(base)
	if err != nil {
		return "", fmt.Errorf("jetmedia: redirect: %w", err)
	}
	r, err := neturl.Parse(ref)
	if err != nil {
		return "", fmt.Errorf("jetmedia: redirect to %q: %w", ref, err)
	}
	u := b.ResolveReference(r)
	switch u.Scheme {
	case "ws", "wss":
	case "http":
		u.Scheme = "ws"
	case "https":
		u.Scheme = "wss"
	default:
		return "", fmt.Errorf("jetmedia: redirect to %q: not a WebSocket URL", ref)
	}
	return u.String(), nil
}

// errRedirect is dialJoin's error for a redirect message (the message says where).
var errRedirect = errors.New("jetmedia: join redirected")

// dialJoin opens a WebSocket and sends join; it returns the socket and the server's joined. A
// refused join is an *Error; a redirect errRedirect with the message.
func dialJoin(ctx context.Context, url string, trace func(bool, []byte), join signal.ClientMessage) (*websocket.Conn, signal.ServerMessage, error) {
	var m signal.ServerMessage
	ws, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{HTTPClient: http.DefaultClient})
	if err != nil {
		return nil, m, fmt.Errorf("jetmedia: dial %s: %w", url, err)
	}
	ws.SetReadLimit(1 << 20)
	if err := writeMsg(ctx, ws, trace, join); err != nil {
		_ = ws.CloseNow()
		return nil, m, fmt.Errorf("jetmedia: join: %w", err)
	}
	if err := readMsg(ctx, ws, trace, &m); err != nil {
		_ = ws.CloseNow()
		return nil, m, fmt.Errorf("jetmedia: join: %w", err)
	}
	switch {
	case m.Type == signal.TypeError:
		_ = ws.CloseNow()
		return nil, m, &Error{Code: m.Code, Message: m.Message}
	case m.Type == signal.TypeRedirect:
		_ = ws.CloseNow()
		return nil, m, errRedirect
	case m.Type != signal.TypeJoined || m.Self == nil:
		_ = ws.CloseNow()
		return nil, m, fmt.Errorf("jetmedia: join: expected joined, got %q", m.Type)
	}
	return ws, m, nil
}

// State returns the room as the SDK knows it now: the other peers and every track (its own
// included), sorted by id.
func (r *Room) State() ([]signal.PeerInfo, []signal.TrackInfo) {
	r.smu.Lock()
	defer r.smu.Unlock()
	peers := make([]signal.PeerInfo, 0, len(r.peers))
	for _, id := range slices.Sorted(maps.Keys(r.peers)) {
		peers = append(peers, r.peers[id])
	}
	tracks := make([]signal.TrackInfo, 0, len(r.tracks))
	for _, id := range slices.Sorted(maps.Keys(r.tracks)) {
		tracks = append(tracks, r.tracks[id])
	}
	return peers, tracks
}

// Events delivers the room's events; it is closed when the room is left or the connection
// ends.
func (r *Room) Events() <-chan Event { return r.events }

// OnTrack sets the function called for each remote track (StreamID is the publishing peer, ID
// the track id). Set it before tracks can arrive (right after Join).
func (r *Room) OnTrack(fn func(*webrtc.TrackRemote, *webrtc.RTPReceiver)) {
	r.tmu.Lock()
	r.onTrack = fn
	r.tmu.Unlock()
}

// PeerConnection is the room's PeerConnection (for stats).
func (r *Room) PeerConnection() *webrtc.PeerConnection { return r.pc }

func (r *Room) conn() *websocket.Conn {
	r.wmu.Lock()
	defer r.wmu.Unlock()
	return r.ws
}

func (r *Room) write(m signal.ClientMessage) error {
	r.wmu.Lock()
	defer r.wmu.Unlock()
	ctx, cancel := context.WithTimeout(r.ctx, 10*time.Second)
	defer cancel()
	return writeMsg(ctx, r.ws, r.trace, m)
}

func writeMsg(ctx context.Context, ws *websocket.Conn, trace func(bool, []byte), m signal.ClientMessage) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	if trace != nil {
		trace(false, b)
	}
	return ws.Write(ctx, websocket.MessageText, b)
}

func readMsg(ctx context.Context, ws *websocket.Conn, trace func(bool, []byte), m *signal.ServerMessage) error {
	_, b, err := ws.Read(ctx)
	if err != nil {
		return err
	}
	if trace != nil {
		trace(true, b)
	}
	return json.Unmarshal(b, m)
}

// Publish adds track (source: "camera", "screen", "mic" or free text) and announces it; the
// server answers with an offer whose receiving m-line the track's transceiver takes, so only
// the server ever offers and offers never cross. The caller writes its media.
func (r *Room) Publish(track webrtc.TrackLocal, source string) (*webrtc.RTPSender, error) {
	return r.PublishWith(track, PublishOptions{Source: source})
}

// PublishOptions describe a published track.
type PublishOptions struct {
	// Source labels the track: "camera", "screen", "mic" or free text (at most 64
	// characters).
	Source string
	// Muted publishes it muted (Mute changes it later).
	Muted bool
}

// PublishWith is Publish with every option.
func (r *Room) PublishWith(track webrtc.TrackLocal, o PublishOptions) (*webrtc.RTPSender, error) {
	r.nmu.Lock()
	tx, err := r.pc.AddTransceiverFromTrack(track, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
	r.nmu.Unlock()
	if err != nil {
		return nil, err
	}
	pub := signal.ClientMessage{Type: signal.TypePublish, Kind: track.Kind().String(), Source: o.Source}
	if o.Muted {
		pub.Muted = &o.Muted
	}
	if err := r.write(pub); err != nil {
		return nil, err
	}
	sender := tx.Sender()
	r.pmu.Lock()
	r.pending = append(r.pending, sender)
	r.pmu.Unlock()
	// Read RTCP so that interceptors run and the sender's buffer does not fill.
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		for {
			if _, _, err := sender.ReadRTCP(); err != nil {
				return
			}
		}
	}()
	return sender, nil
}

// TrackID waits until the server has named the track sent by sender (its track_published).
func (r *Room) TrackID(ctx context.Context, sender *webrtc.RTPSender) (string, error) {
	for {
		r.pmu.Lock()
		id, ok := r.published[sender]
		ch := r.named
		r.pmu.Unlock()
		if ok {
			return id, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return "", ctx.Err()
		case <-r.ctx.Done():
			return "", errors.New("jetmedia: room closed")
		}
	}
}

// Unpublish stops publishing the track sent by sender.
func (r *Room) Unpublish(ctx context.Context, sender *webrtc.RTPSender) error {
	id, err := r.TrackID(ctx, sender)
	if err != nil {
		return err
	}
	if err := r.write(signal.ClientMessage{Type: signal.TypeUnpublish, Track: id}); err != nil {
		return err
	}
	return sender.ReplaceTrack(nil)
}

// Mute mutes or unmutes the track sent by sender; the room (this peer included) sees a
// TrackUpdated event. It does not stop the track's media: muting what is sent is up to the
// caller.
func (r *Room) Mute(ctx context.Context, sender *webrtc.RTPSender, muted bool) error {
	id, err := r.TrackID(ctx, sender)
	if err != nil {
		return err
	}
	return r.write(signal.ClientMessage{Type: signal.TypeMute, Track: id, Muted: &muted})
}

// UpdateMetadata replaces this peer's metadata (at most 4096 bytes); the other peers see a
// PeerUpdated event.
func (r *Room) UpdateMetadata(metadata string) error {
	if len(metadata) > signal.MaxMetadata {
		return fmt.Errorf("jetmedia: metadata has %d bytes, at most %d", len(metadata), signal.MaxMetadata)
	}
	if err := r.write(signal.ClientMessage{Type: signal.TypeUpdate, Metadata: metadata}); err != nil {
		return err
	}
	r.smu.Lock()
	r.Self.Metadata = metadata
	r.smu.Unlock()
	return nil
}

// name records the server's id of this peer's next published track of kind.
func (r *Room) name(t signal.TrackInfo) {
	r.pmu.Lock()
	defer r.pmu.Unlock()
	for i, s := range r.pending {
		if s.Track() != nil && s.Track().Kind().String() == t.Kind {
			r.pending = append(r.pending[:i], r.pending[i+1:]...)
			r.published[s] = t.Track
			close(r.named)
			r.named = make(chan struct{})
			return
		}
	}
}

// Subscribe starts receiving a track (manual mode, or again after Unsubscribe); the server
// offers it and OnTrack sees it.
func (r *Room) Subscribe(track string) error {
	return r.write(signal.ClientMessage{Type: signal.TypeSubscribe, Track: track})
}

// Unsubscribe stops receiving a track.
func (r *Room) Unsubscribe(track string) error {
	return r.write(signal.ClientMessage{Type: signal.TypeUnsubscribe, Track: track})
}

// SetQuality chooses the simulcast layer of a subscribed track: one of the track's Layers
// (TrackInfo.Layers), or "" to let the node choose from the bandwidth and the rendered size.
// The picture changes at the layer's next key frame.
func (r *Room) SetQuality(track, layer string) error {
	return r.write(signal.ClientMessage{Type: signal.TypeLayer, Track: track, Quality: &layer})
}

// SetViewSize tells the node the size (pixels) the client renders a subscribed track at, so
// that it sends the smallest simulcast layer that fills it; 0 means unknown. Send it when
// the size changes, not every frame: layer messages count against the session's rate limit.
func (r *Room) SetViewSize(track string, width, height int) error {
	return r.write(signal.ClientMessage{Type: signal.TypeLayer, Track: track, Width: &width, Height: &height})
}

// Send sends a data message to one peer, or to the whole room when to is empty.
func (r *Room) Send(payload, to string) error {
	return r.write(signal.ClientMessage{Type: signal.TypeData, Payload: &payload, To: to})
}

// Leave leaves the room and closes the connection. Idempotent.
func (r *Room) Leave() error {
	var err error
	r.closeOnce.Do(func() {
		r.closing.Store(true)
		err = r.write(signal.ClientMessage{Type: signal.TypeLeave})
		// Give the server a moment to record the leave before the socket goes.
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		select {
		case <-r.ctx.Done():
		case <-ctx.Done():
		}
		r.shutdown()
	})
	return err
}

// Close closes the room for good without a leave: the server sees the socket end and the
// peer leaves once its resume grace period is over.
func (r *Room) Close() error {
	r.closeOnce.Do(r.shutdown)
	return nil
}

// DropConnection drops the WebSocket abruptly, as a network failure would (no leave, no close
// handshake), and resumes the session after reconnectAfter. For tests of resume.
func (r *Room) DropConnection(reconnectAfter time.Duration) {
	r.dropDelay.Store(int64(reconnectAfter))
	_ = r.conn().CloseNow()
}

func (r *Room) shutdown() {
	r.closing.Store(true)
	r.cancel()
	_ = r.conn().CloseNow()
	_ = r.pc.Close()
	r.wg.Wait()
}

// onOffer answers a server offer (the SDK never offers itself, so offers cannot cross).
func (r *Room) onOffer(sdp string) error {
	r.nmu.Lock()
	defer r.nmu.Unlock()
	return r.answerLocked(sdp)
}

func (r *Room) answerLocked(sdp string) error {
	if err := r.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: sdp}); err != nil {
		return err
	}
	a, err := r.pc.CreateAnswer(nil)
	if err != nil {
		return err
	}
	gathered := webrtc.GatheringCompletePromise(r.pc)
	if err := r.pc.SetLocalDescription(a); err != nil {
		return err
	}
	<-gathered
	return r.write(signal.ClientMessage{Type: signal.TypeAnswer, SDP: r.pc.LocalDescription().SDP})
}

func (r *Room) onAnswer(sdp string) error {
	r.nmu.Lock()
	defer r.nmu.Unlock()
	if r.pc.SignalingState() != webrtc.SignalingStateHaveLocalOffer {
		return errors.New("answer without an offer")
	}
	return r.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: sdp})
}

func (r *Room) emit(e Event) {
	e.At = time.Now()
	select {
	case r.events <- e:
	default:
	}
}

// read handles the server's messages until the room ends, resuming the session when the
// WebSocket drops.
func (r *Room) read() {
	defer r.wg.Done()
	defer close(r.events)
	defer r.cancel()
	for {
		r.readSocket(r.conn())
		if r.ctx.Err() != nil || r.closing.Load() {
			return
		}
		if r.resumeToken == "" || r.resumeWithin < 0 {
			r.emit(Event{Type: ErrorEvent, Code: CodeResumeFailed, Message: "connection lost and the server offers no resume"})
			_ = r.pc.Close()
			return
		}
		if !r.resume() {
			_ = r.pc.Close()
			return
		}
	}
}

// resume re-attaches to the session on a new WebSocket, retrying within resumeWithin.
func (r *Room) resume() bool {
	r.emit(Event{Type: Reconnecting})
	deadline := time.Now().Add(r.resumeWithin)
	wait := time.Duration(r.dropDelay.Swap(0))
	backoff := 100 * time.Millisecond
	join := signal.ClientMessage{Type: signal.TypeJoin, Version: signal.Version, Token: r.token, Room: r.roomOpt, Resume: r.resumeToken}
	for attempt := 0; ; attempt++ {
		if wait > 0 {
			select {
			case <-time.After(wait):
			case <-r.ctx.Done():
				return false
			}
		}
		ctx, cancel := context.WithTimeout(r.ctx, 5*time.Second)
		ws, m, err := dialJoin(ctx, r.url, r.trace, join)
		cancel()
		var se *Error
		switch {
		case err == nil && !m.Resumed:
			_ = ws.CloseNow()
			r.emit(Event{Type: ErrorEvent, Code: CodeResumeFailed, Message: "the server answered the resume with a new session"})
			return false
		case err == nil:
			r.wmu.Lock()
			r.ws = ws
			r.wmu.Unlock()
			r.applySnapshot(m)
			r.emit(Event{Type: Reconnected})
			return true
		case r.ctx.Err() != nil:
			return false
		case errors.Is(err, errRedirect):
			// Servers never place a resume; one that does cannot have the session.
			r.emit(Event{Type: ErrorEvent, Code: CodeResumeFailed, Message: "the server sent the resume to another node"})
			return false
		case errors.As(err, &se):
			// The server answered: expired, or the token is no longer good. Final.
			r.emit(Event{Type: ErrorEvent, Code: se.Code, Message: se.Message})
			return false
		case attempt > 0 && time.Now().After(deadline):
			r.emit(Event{Type: ErrorEvent, Code: CodeResumeFailed, Message: fmt.Sprintf("no connection within %v: %v", r.resumeWithin, err)})
			return false
		}
		wait = backoff
		backoff = min(2*backoff, time.Second)
	}
}

// applySnapshot turns a resumed joined into the events the client missed while detached.
func (r *Room) applySnapshot(m signal.ServerMessage) {
	peers := map[string]signal.PeerInfo{}
	for _, p := range m.Peers {
		peers[p.Peer] = p
	}
	tracks := map[string]signal.TrackInfo{}
	for _, t := range m.Tracks {
		tracks[t.Track] = t
	}
	r.smu.Lock()
	oldPeers, oldTracks := r.peers, r.tracks
	r.peers, r.tracks = peers, tracks
	r.smu.Unlock()
	for _, id := range slices.Sorted(maps.Keys(oldTracks)) {
		if _, ok := tracks[id]; !ok {
			r.emit(Event{Type: TrackUnpublished, Track: oldTracks[id]})
		}
	}
	for _, id := range slices.Sorted(maps.Keys(oldPeers)) {
		if _, ok := peers[id]; !ok {
			r.emit(Event{Type: PeerLeft, Peer: oldPeers[id]})
		}
	}
	for _, id := range slices.Sorted(maps.Keys(peers)) {
		old, ok := oldPeers[id]
		switch {
		case !ok:
			r.emit(Event{Type: PeerJoined, Peer: peers[id]})
		case old.Metadata != peers[id].Metadata:
			r.emit(Event{Type: PeerUpdated, Peer: peers[id]})
		}
	}
	for _, id := range slices.Sorted(maps.Keys(tracks)) {
		t := tracks[id]
		old, ok := oldTracks[id]
		switch {
		case !ok:
			if t.Peer == r.Self.Peer {
				r.name(t)
			}
			r.emit(Event{Type: TrackPublished, Track: t})
		case old.Muted != t.Muted:
			r.emit(Event{Type: TrackUpdated, Track: t})
		}
	}
}

// readSocket handles one WebSocket's messages until it fails.
func (r *Room) readSocket(ws *websocket.Conn) {
	for {
		var m signal.ServerMessage
		if err := readMsg(r.ctx, ws, r.trace, &m); err != nil {
			return
		}
		var err error
		switch m.Type {
		case signal.TypeOffer:
			err = r.onOffer(m.SDP)
		case signal.TypeAnswer:
			err = r.onAnswer(m.SDP)
		case signal.TypeCandidate:
			var ci webrtc.ICECandidateInit
			if err = json.Unmarshal(m.Candidate, &ci); err == nil {
				err = r.pc.AddICECandidate(ci)
			}
		case signal.TypePeerJoined, signal.TypePeerLeft, signal.TypePeerUpdated:
			if m.Peer != nil {
				r.smu.Lock()
				if m.Type == signal.TypePeerLeft {
					delete(r.peers, m.Peer.Peer)
				} else {
					r.peers[m.Peer.Peer] = *m.Peer
				}
				r.smu.Unlock()
				r.emit(Event{Type: EventType(m.Type), Peer: *m.Peer})
			}
		case signal.TypeTrackPublished, signal.TypeTrackUnpublished, signal.TypeTrackUpdated, signal.TypeSubscription:
			if m.Track == nil {
				break
			}
			if m.Type == signal.TypeTrackPublished && m.Track.Peer == r.Self.Peer {
				r.name(*m.Track)
			}
			r.smu.Lock()
			switch m.Type {
			case signal.TypeTrackPublished, signal.TypeTrackUpdated:
				r.tracks[m.Track.Track] = *m.Track
			case signal.TypeTrackUnpublished:
				delete(r.tracks, m.Track.Track)
			}
			r.smu.Unlock()
			r.emit(Event{Type: EventType(m.Type), Track: *m.Track, State: m.State})
		case signal.TypeData:
			e := Event{Type: Data, From: m.From, To: m.To}
			if m.Payload != nil {
				e.Payload = *m.Payload
			}
			r.emit(e)
		case signal.TypeSpeakers:
			r.emit(Event{Type: Speakers, Speakers: m.Speakers})
		case signal.TypeError:
			r.emit(Event{Type: ErrorEvent, Code: m.Code, Message: m.Message})
		}
		if err != nil && !errors.Is(err, context.Canceled) {
			r.emit(Event{Type: ErrorEvent, Code: "client", Message: err.Error()})
		}
	}
}
