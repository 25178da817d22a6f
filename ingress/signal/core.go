package signal

import (
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jetmedia/jetmedia/events"
	"github.com/jetmedia/jetmedia/pipeline/audiolevel"
	"github.com/jetmedia/jetmedia/pipeline/auth"
	"github.com/jetmedia/jetmedia/pipeline/rtc"
)

// TrackSpec is what the shell needs to subscribe to a published track.
type TrackSpec struct {
	Track     string   `json:"track"`
	Peer      string   `json:"peer"`
	Kind      string   `json:"kind"`
	Codec     string   `json:"codec"`
	ClockRate uint32   `json:"clock_rate"`
	Channels  uint16   `json:"channels,omitempty"`
	FmtpLine  string   `json:"fmtp,omitempty"`
	Source    string   `json:"source,omitempty"`
	Muted     bool     `json:"muted,omitempty"`
	Layers    []string `json:"layers,omitempty"`
}

// peerRecord is the part of a "<room>.peer.<p>" KV value the core reads.
type peerRecord struct {
	Peer      string `json:"peer"`
	Transport string `json:"transport"`
	Identity  string `json:"identity,omitempty"`
	Name      string `json:"name,omitempty"`
	Metadata  string `json:"metadata,omitempty"`
}

// subRecord is the part of a "<room>.sub.<p>.<t>" KV value the core reads.
type subRecord struct {
	Peer      string `json:"peer"`
	Track     string `json:"track"`
	Publisher string `json:"publisher"`
}

// Output is what the shell must do after an input: the rtc.Output (events to append, PLIs,
// close), messages to send to the client in order, tracks to start and stop forwarding to
// it, and data messages to put on the room's data subjects.
type Output struct {
	rtc.Output
	Send        []ServerMessage
	Subscribe   []TrackSpec
	Unsubscribe []string
	Data        []DataMessage
	// Unpublished lists this peer's tracks whose RTP must no longer go onto their subjects.
	Unpublished []string
	// Receive lists the kinds of tracks announced by publish: the shell adds a receiving
	// transceiver for each and offers it, so the client never has to make an offer itself.
	Receive []string
	// ReceiveLayers are the simulcast layers the receiving m-line of the publish asks for
	// (lowest first; empty: one layer).
	ReceiveLayers []string
	// ReceiveCodec is the codec (MIME type) the publish sends in, "" any: the receiving
	// m-line offers only it.
	ReceiveCodec string
	// Layers are the client's layer choices for subscribed tracks.
	Layers []LayerChoice
}

// LayerChoice is a client's choice for a subscribed track's simulcast layer: Quality nil
// leaves the manual choice as it was; Width and Height nil leave the size as it was.
type LayerChoice struct {
	Track         string
	Quality       *string
	Width, Height *int
}

// MaxDimension bounds a rendered size a client may report (pixels).
const MaxDimension = 16384

// Transport names room SDK peers in their events.
const Transport = "sdk"

// Core is the sans-IO state machine of one SDK session: joined from the start (the shell
// creates it once the join's token is verified), closed once. It composes the shared session
// lifecycle (join and leave, connect timeout once media is negotiated, disconnect grace,
// keyframe throttling, close reasons) with the room's signalling.
type Core struct {
	*rtc.Lifecycle
	room, peer, node string
	claims           auth.Claims
	auto             bool

	// closed mirrors the lifecycle's state: every close goes through close.
	closed bool
	// ready: the KV watch has delivered the room's initial state and joined was sent.
	ready bool

	peers  map[string]PeerInfo
	tracks map[string]TrackSpec
	// sent is what the client was told to send of its simulcast tracks (core_pause.go).
	sent map[string]*sentLayers
	// subs: this peer's subscriptions in the room's state, by track; resyncing: set between
	// KVResync and KVResynced (core_resync.go).
	subs      map[string]bool
	resyncing *resync
	// subscribed tracks (forwarded to this client), and announced publishes not yet started.
	subscribed map[string]bool
	announced  []ClientMessage
	published  []string
	// muted: per published track, as last recorded.
	muted map[string]bool
	// ranked: the node's latest ranking of the room's speakers; speakers: as last sent
	// (nil: nothing sent yet, the same as nobody).
	ranked   []audiolevel.Speaker
	speakers []SpeakerInfo

	// metadata is this peer's, as last recorded; metadataUnsure: an update of it could not be
	// recorded, so the next update is recorded whatever it says.
	metadata       string
	metadataUnsure bool
	// limits: the client's message buckets (see Limits).
	limits                       Limits
	evBucket, dataBucket, excess bucket
	// Resume: the token a client presents to re-attach, how long a session without a socket
	// lives, and since when it has had none.
	resumeToken string
	grace       time.Duration
	detached    bool
	detachedAt  time.Time
}

// NewCore returns the core of peer's session in room, opened with claims.
func NewCore(t rtc.Timeouts, room, peer, node string, claims auth.Claims, autoSubscribe bool) *Core {
	c := &Core{room: room, peer: peer, node: node, claims: claims, auto: autoSubscribe,
		peers: map[string]PeerInfo{}, tracks: map[string]TrackSpec{}, subscribed: map[string]bool{},
		muted: map[string]bool{}, subs: map[string]bool{}}
	c.Lifecycle = rtc.NewLifecycle(t, rtc.Peer{ID: peer, Node: node, Transport: Transport, Role: c.role(),
		Identity: claims.Identity, Name: claims.Name}, c.ending)
	c.setLimits(Limits{})
	return c
}

func (c *Core) setLimits(l Limits) {
	c.limits = l.WithDefaults()
	c.evBucket, c.dataBucket, c.excess = newBucket(c.limits.Events), newBucket(c.limits.Data), newBucket(c.limits.Excess)
}

// JoinOptions are what a join sets besides the token.
type JoinOptions struct {
	// Metadata is the peer's application metadata (at most MaxMetadata bytes; the shell
	// checks it before the session exists).
	Metadata string
	// ResumeToken is handed to the client in joined; a join presenting it re-attaches. Empty:
	// no resume.
	ResumeToken string
	// Grace is how long the session outlives its WebSocket waiting for a resume; 0: it ends
	// with the socket.
	Grace time.Duration
	// Limits bound the client's messages (zero fields: DefaultLimits).
	Limits Limits
}

// SetJoinOptions sets the join's options; call it before Joined.
func (c *Core) SetJoinOptions(o JoinOptions) {
	c.metadata, c.resumeToken, c.grace = o.Metadata, o.ResumeToken, o.Grace
	c.setLimits(o.Limits)
	if c.resumeToken == "" {
		c.grace = 0
	}
}

// Detached reports whether the session is waiting for a resume.
func (c *Core) Detached() bool { return c.detached }

// Peer is the session's peer id.
func (c *Core) Peer() string { return c.peer }

// Closed reports whether the session has ended.
func (c *Core) Closed() bool { return c.closed }

func (c *Core) role() string {
	if c.claims.Has(auth.Publish) {
		return "publisher"
	}
	return "viewer"
}

// Joined: the session is accepted; its peer.joined goes to the log.
func (c *Core) Joined(now time.Time, remoteAddr, userAgent string) Output {
	return Output{Output: c.Lifecycle.Joined(now, remoteAddr, userAgent, c.metadata)}
}

func errMsg(code, format string, args ...any) ServerMessage {
	return ServerMessage{Type: TypeError, Code: code, Message: fmt.Sprintf(format, args...)}
}

// KVPut: the room's KV state has key = value (initial state or a change).
func (c *Core) KVPut(_ time.Time, key string, value []byte) Output {
	var out Output
	if c.closed {
		return out
	}
	kind, id, ok := c.splitKey(key)
	if !ok {
		return out
	}
	c.confirm(kind, id)
	switch kind {
	case "peer":
		var p peerRecord
		if json.Unmarshal(value, &p) != nil {
			return out
		}
		info := PeerInfo{Peer: id, Identity: p.Identity, Name: p.Name, Transport: p.Transport, Metadata: p.Metadata}
		old, known := c.peers[id]
		c.peers[id] = info
		switch {
		case !c.ready || id == c.peer:
		case !known:
			out.Send = append(out.Send, ServerMessage{Type: TypePeerJoined, Peer: &info})
		case old.Metadata != info.Metadata:
			out.Send = append(out.Send, ServerMessage{Type: TypePeerUpdated, Peer: &info})
		}
	case "track":
		var t TrackSpec
		if json.Unmarshal(value, &t) != nil {
			return out
		}
		t.Track = id
		old, known := c.tracks[id]
		c.tracks[id] = t
		switch {
		case !c.ready:
		case !known:
			out.Send = append(out.Send, ServerMessage{Type: TypeTrackPublished, Track: trackInfo(t)})
			c.autoSubscribe(&out, t)
			c.speakersChanged(&out) // a ranked track the client did not know yet
		case old.Muted != t.Muted || !slices.Equal(old.Layers, t.Layers):
			out.Send = append(out.Send, ServerMessage{Type: TypeTrackUpdated, Track: trackInfo(t)})
		}
	case "sub":
		var s subRecord
		if json.Unmarshal(value, &s) != nil || s.Peer != c.peer {
			return out
		}
		known := c.subs[s.Track]
		c.subs[s.Track] = true
		if !c.ready || (known && c.resyncing != nil) {
			return out // a resync's repeat of a subscription the client knows is no news
		}
		if t, ok := c.tracks[s.Track]; ok {
			out.Send = append(out.Send, ServerMessage{Type: TypeSubscription, Track: trackInfo(t), State: "active"})
		}
	}
	return out
}

// KVDeleted: key was removed from the room's KV state.
func (c *Core) KVDeleted(_ time.Time, key string) Output {
	var out Output
	if c.closed {
		return out
	}
	kind, id, ok := c.splitKey(key)
	if !ok {
		return out
	}
	c.confirm(kind, id)
	switch kind {
	case "peer":
		info, known := c.peers[id]
		delete(c.peers, id)
		if known && c.ready && id != c.peer {
			out.Send = append(out.Send, ServerMessage{Type: TypePeerLeft, Peer: &info})
		}
	case "track":
		t, known := c.tracks[id]
		delete(c.tracks, id)
		if !known {
			return out
		}
		if c.ready {
			out.Send = append(out.Send, ServerMessage{Type: TypeTrackUnpublished, Track: trackInfo(t)})
		}
		if c.subscribed[id] {
			delete(c.subscribed, id)
			out.Unsubscribe = append(out.Unsubscribe, id)
		}
	case "sub":
		p, track, _ := strings.Cut(id, ".")
		if p == c.peer {
			delete(c.subs, track)
		}
		if p == c.peer && c.ready {
			if t, ok := c.tracks[track]; ok {
				out.Send = append(out.Send, ServerMessage{Type: TypeSubscription, Track: trackInfo(t), State: "ended"})
			}
		}
	}
	return out
}

// KVReady: the watch has delivered the room's whole initial state. The client gets its
// snapshot and, in auto-subscribe mode, every other peer's tracks.
func (c *Core) KVReady(time.Time) Output {
	var out Output
	if c.closed || c.ready {
		return out
	}
	c.ready = true
	out.Send = append(out.Send, c.snapshot(false))
	for _, id := range slices.Sorted(maps.Keys(c.tracks)) {
		c.autoSubscribe(&out, c.tracks[id])
	}
	c.speakersChanged(&out)
	return out
}

// snapshot is the joined message: the room as the core knows it now.
func (c *Core) snapshot(resumed bool) ServerMessage {
	self := PeerInfo{Peer: c.peer, Identity: c.claims.Identity, Name: c.claims.Name, Transport: Transport, Metadata: c.metadata}
	j := ServerMessage{Type: TypeJoined, Version: Version, Room: c.room, Self: &self,
		ResumeToken: c.resumeToken, Resumed: resumed}
	for _, g := range c.claims.Grants {
		j.Grants = append(j.Grants, string(g))
	}
	for _, id := range slices.Sorted(maps.Keys(c.peers)) {
		if id != c.peer {
			j.Peers = append(j.Peers, c.peers[id])
		}
	}
	for _, id := range slices.Sorted(maps.Keys(c.tracks)) {
		j.Tracks = append(j.Tracks, *trackInfo(c.tracks[id]))
	}
	return j
}

func (c *Core) autoSubscribe(out *Output, t TrackSpec) {
	if !c.auto || t.Peer == c.peer || c.subscribed[t.Track] || !c.claims.Has(auth.Subscribe) {
		return
	}
	c.subscribed[t.Track] = true
	out.Subscribe = append(out.Subscribe, t)
	out.Events = append(out.Events, events.SubscriptionStarted{Peer: c.peer, Track: t.Track, Publisher: t.Peer})
}

func trackInfo(t TrackSpec) *TrackInfo {
	return &TrackInfo{Track: t.Track, Peer: t.Peer, Kind: t.Kind, Codec: t.Codec, Source: t.Source, Muted: t.Muted, Layers: t.Layers}
}

// splitKey reads "<room>.<kind>.<rest>".
func (c *Core) splitKey(key string) (kind, rest string, ok bool) {
	r, after, ok := strings.Cut(key, ".")
	if !ok || r != c.room {
		return "", "", false
	}
	kind, rest, ok = strings.Cut(after, ".")
	return kind, rest, ok && rest != ""
}

// Message: a client message other than offer, answer and candidate (the shell handles those
// with pion).
func (c *Core) Message(now time.Time, m ClientMessage) Output {
	if c.closed {
		return Output{}
	}
	if m.Type != TypeLeave {
		if refused, ok := c.admit(now, m.Type); !ok {
			return refused
		}
	}
	switch m.Type {
	case TypePublish:
		return c.publish(m)
	case TypeUnpublish:
		return c.unpublish(m)
	case TypeSubscribe:
		return c.subscribe(m)
	case TypeUnsubscribe:
		return c.unsubscribe(m)
	case TypeData:
		return c.data(m)
	case TypeMute:
		return c.mute(m)
	case TypeUpdate:
		return c.update(m)
	case TypeLayer:
		return c.layer(m)
	case TypeLeave:
		return c.close(now, rtc.ReasonClosed)
	case TypeJoin:
		return refuse(CodeBadRequest, "already joined")
	default:
		return refuse(CodeBadRequest, "unknown message type %q", m.Type)
	}
}

// refuse is an output that only tells the client why its message was refused.
func refuse(code, format string, args ...any) Output {
	return Output{Send: []ServerMessage{errMsg(code, format, args...)}}
}

func (c *Core) publish(m ClientMessage) Output {
	if !c.claims.Has(auth.Publish) {
		return refuse(CodeForbidden, "token lacks the %q grant", auth.Publish)
	}
	if m.Kind != "audio" && m.Kind != "video" {
		return refuse(CodeBadRequest, "publish: kind must be audio or video, not %q", m.Kind)
	}
	if n := utf8.RuneCountInString(m.Source); n > MaxSource || !utf8.ValidString(m.Source) {
		return refuse(CodeBadRequest, "publish: source must be valid text of at most %d characters (got %d)", MaxSource, n)
	}
	var layers []string
	if len(m.Simulcast) > 0 {
		if m.Kind != "video" {
			return refuse(CodeBadRequest, "publish: only video is sent in simulcast layers")
		}
		var err error
		if layers, err = rtc.CheckLayers(m.Simulcast); err != nil {
			return refuse(CodeBadRequest, "publish: %v", err)
		}
	}
	if m.Codec != "" && !validCodec(m.Kind, m.Codec) {
		return refuse(CodeBadRequest, "publish: codec must be a %s MIME type such as %s/VP8, not %q", m.Kind, m.Kind, m.Codec)
	}
	c.announced = append(c.announced, m)
	return Output{Receive: []string{m.Kind}, ReceiveLayers: layers, ReceiveCodec: m.Codec}
}

func (c *Core) unpublish(m ClientMessage) Output {
	i := slices.Index(c.published, m.Track)
	if i < 0 {
		return refuse(CodeNotFound, "unpublish: track %q is not published by this peer", m.Track)
	}
	c.published = slices.Delete(c.published, i, i+1)
	delete(c.muted, m.Track)
	var out Output
	out.Events = append(out.Events, events.TrackUnpublished{Peer: c.peer, Track: m.Track})
	out.Unpublished = append(out.Unpublished, m.Track)
	return out
}

func (c *Core) subscribe(m ClientMessage) Output {
	t, ok := c.tracks[m.Track]
	switch {
	case !c.claims.Has(auth.Subscribe):
		return refuse(CodeForbidden, "token lacks the %q grant", auth.Subscribe)
	case !ok || t.Peer == c.peer:
		return refuse(CodeNotFound, "subscribe: no track %q of another peer in room %q", m.Track, c.room)
	case c.subscribed[m.Track]:
		return Output{}
	}
	c.subscribed[m.Track] = true
	var out Output
	out.Subscribe = append(out.Subscribe, t)
	out.Events = append(out.Events, events.SubscriptionStarted{Peer: c.peer, Track: t.Track, Publisher: t.Peer})
	return out
}

func (c *Core) unsubscribe(m ClientMessage) Output {
	if !c.subscribed[m.Track] {
		return refuse(CodeNotFound, "unsubscribe: not subscribed to track %q", m.Track)
	}
	delete(c.subscribed, m.Track)
	var out Output
	out.Unsubscribe = append(out.Unsubscribe, m.Track)
	out.Events = append(out.Events, events.SubscriptionEnded{Peer: c.peer, Track: m.Track})
	return out
}

func (c *Core) data(m ClientMessage) Output {
	switch {
	case !c.claims.Has(auth.Data):
		return refuse(CodeForbidden, "token lacks the %q grant", auth.Data)
	case m.Payload == nil:
		return refuse(CodeBadRequest, "data: payload is required")
	case len(*m.Payload) > MaxPayload:
		return refuse(CodeBadRequest, "data: payload has %d bytes, at most %d", len(*m.Payload), MaxPayload)
	case m.To != "" && (m.To == c.peer || c.peers[m.To] == (PeerInfo{})):
		return refuse(CodeNotFound, "data: no peer %q in room %q", m.To, c.room)
	}
	return Output{Data: []DataMessage{{From: c.peer, To: m.To, Payload: *m.Payload}}}
}

// layer: a choice for a subscribed track's simulcast layer; nothing enters the log (the
// layer a viewer receives is the node's business, changed at every resize).
func (c *Core) layer(m ClientMessage) Output {
	dim := func(v *int) bool { return v == nil || (*v >= 0 && *v <= MaxDimension) }
	switch {
	case !c.subscribed[m.Track]:
		return refuse(CodeNotFound, "layer: not subscribed to track %q", m.Track)
	case m.Quality == nil && m.Width == nil && m.Height == nil:
		return refuse(CodeBadRequest, "layer: quality, width or height is required")
	case !dim(m.Width) || !dim(m.Height):
		return refuse(CodeBadRequest, "layer: width and height must be 0 to %d pixels", MaxDimension)
	case m.Quality != nil && *m.Quality != "" && !slices.Contains(c.tracks[m.Track].Layers, *m.Quality):
		return refuse(CodeBadRequest, "layer: track %q has no layer %q (layers %v)", m.Track, *m.Quality, c.tracks[m.Track].Layers)
	}
	return Output{Layers: []LayerChoice{{Track: m.Track, Quality: m.Quality, Width: m.Width, Height: m.Height}}}
}

func (c *Core) mute(m ClientMessage) Output {
	switch {
	case !slices.Contains(c.published, m.Track):
		return refuse(CodeNotFound, "mute: track %q is not published by this peer", m.Track)
	case m.Muted == nil:
		return refuse(CodeBadRequest, "mute: muted (true or false) is required")
	case c.muted[m.Track] == *m.Muted:
		// A mute that changes nothing records nothing.
		return Output{}
	}
	c.muted[m.Track] = *m.Muted
	var out Output
	out.Events = append(out.Events, events.TrackUpdated{Peer: c.peer, Track: m.Track, Muted: *m.Muted})
	return out
}

func (c *Core) update(m ClientMessage) Output {
	switch {
	case !c.mayUpdate():
		return refuse(CodeForbidden, "update: token lacks the %q grant (or %q): it may not change its metadata", auth.Metadata, auth.Publish)
	case len(m.Metadata) > MaxMetadata:
		return refuse(CodeBadRequest, "update: metadata has %d bytes, at most %d", len(m.Metadata), MaxMetadata)
	case m.Metadata == c.metadata && !c.metadataUnsure:
		return Output{}
	}
	c.metadata, c.metadataUnsure = m.Metadata, false
	var out Output
	out.Events = append(out.Events, events.PeerUpdated{Peer: c.peer, Metadata: m.Metadata})
	return out
}

// mayUpdate: changing one's metadata after the join needs the metadata grant; a publisher's
// token carries it implicitly (a publisher already writes to the room's log at will), a
// subscribe-only token does not.
func (c *Core) mayUpdate() bool { return c.claims.Has(auth.Metadata) || c.claims.Has(auth.Publish) }

// admit takes a token of the message's class. Refused, the client gets a rate_limited error;
// refused while its excess bucket is empty too, the session closes (reason kicked).
func (c *Core) admit(now time.Time, typ string) (Output, bool) {
	b, r := &c.evBucket, c.limits.Events
	if typ == TypeData {
		b, r = &c.dataBucket, c.limits.Data
	}
	if b.take(now) {
		return Output{}, true
	}
	if c.excess.take(now) {
		return Output{Send: []ServerMessage{errMsg(CodeRateLimited, "%s refused: more than %g such messages a second (burst %d); slow down or the session is closed", typ, r.PerSecond, r.Burst)}}, false
	}
	out := c.close(now, rtc.ReasonKicked)
	out.Send = append([]ServerMessage{errMsg(CodeRateLimited, "%s refused: the client kept exceeding %g messages a second (burst %d): session closed", typ, r.PerSecond, r.Burst)}, out.Send...)
	return out, false
}

// Unrecorded: the events of the last output could not be appended to the log (err says why).
// The client is told, and the core forgets what it assumed recorded, so that a retry records
// again instead of being taken for a change to nothing.
func (c *Core) Unrecorded(_ time.Time, evs []events.Payload, err error) Output {
	var out Output
	var what []string
	for _, e := range evs {
		switch p := e.(type) {
		case events.PeerUpdated:
			c.metadataUnsure = true
		case events.TrackUpdated:
			if _, ok := c.muted[p.Track]; ok {
				c.muted[p.Track] = !p.Muted
			}
		case events.SpeakerChanged:
			continue // the node's measurement, not the client's request: nothing to retry
		}
		what = append(what, e.EventType())
	}
	if len(what) == 0 {
		return out
	}
	out.Send = append(out.Send, errMsg(CodeUnavailable, "not recorded (%s): the event log is unavailable: %v; retry later", strings.Join(what, ", "), err))
	return out
}

// Speakers: the node's ranking of the room's speakers changed (tracks, loudest first). The
// client gets the speakers among the room's tracks it knows, when that list changed: once
// joined, and again when it learns of a ranked track.
func (c *Core) Speakers(_ time.Time, ranked []audiolevel.Speaker) Output {
	var out Output
	c.ranked = ranked
	c.speakersChanged(&out)
	return out
}

// speakersChanged sends the speakers if the list the client should see changed.
func (c *Core) speakersChanged(out *Output) {
	if c.closed || !c.ready {
		return
	}
	list := make([]SpeakerInfo, 0, len(c.ranked))
	for _, sp := range c.ranked {
		if t, ok := c.tracks[sp.Track]; ok {
			list = append(list, SpeakerInfo{Peer: t.Peer, Track: sp.Track, Level: sp.Level})
		}
	}
	if slices.Equal(list, c.speakers) {
		return
	}
	c.speakers = list
	out.Send = append(out.Send, ServerMessage{Type: TypeSpeakers, Speakers: list})
}

// DataReceived: a data message arrived on the room's or this peer's data subject.
func (c *Core) DataReceived(_ time.Time, d DataMessage) Output {
	var out Output
	if c.closed || d.From == c.peer || (d.To != "" && d.To != c.peer) {
		return out
	}
	p := d.Payload
	out.Send = append(out.Send, ServerMessage{Type: TypeData, From: d.From, To: d.To, Payload: &p})
	return out
}

// TrackStarted: RTP of a new track of kind arrived. It is accepted (ok) when a publish of that
// kind was announced; its track.published goes to the log, and a video track gets a keyframe
// request at once (viewers that asked before it existed need one too).
func (c *Core) TrackStarted(now time.Time, t TrackSpec) (Output, bool) {
	var out Output
	if c.closed {
		return out, false
	}
	i := slices.IndexFunc(c.announced, func(m ClientMessage) bool { return m.Kind == t.Kind })
	if i < 0 {
		out.Send = append(out.Send, errMsg(CodeBadRequest, "a %s track arrived without a publish message: announce tracks before adding them", t.Kind))
		return out, false
	}
	m := c.announced[i]
	c.announced = slices.Delete(c.announced, i, i+1)
	c.published = append(c.published, t.Track)
	muted := m.Muted != nil && *m.Muted
	c.muted[t.Track] = muted
	out.Events = append(out.Events, events.TrackPublished{Peer: c.peer, Track: t.Track, Kind: t.Kind,
		Codec: t.Codec, ClockRate: t.ClockRate, Channels: t.Channels, FmtpLine: t.FmtpLine, Layers: layersOrSingle(t.Layers),
		Source: m.Source, Muted: muted})
	if t.Kind == "video" {
		out.PLI = c.KeyframeRequested(now, t.Track).PLI
	}
	return out, true
}

// Published lists the tracks this peer publishes.
func (c *Core) Published() []string { return c.published }

// Subscribed reports whether the core forwards track to this client.
func (c *Core) Subscribed(track string) bool { return c.subscribed[track] }

// Failed: the PeerConnection failed: the peer leaves.
func (c *Core) Failed(now time.Time) rtc.Output { return c.close(now, rtc.ReasonDisconnected).Output }

// Deleted: the session is ended for the client (as a leave does).
func (c *Core) Deleted(now time.Time) rtc.Output { return c.close(now, rtc.ReasonClosed).Output }

// Shutdown: the node is stopping.
func (c *Core) Shutdown(now time.Time) rtc.Output { return c.close(now, rtc.ReasonShutdown).Output }

// EndedInLog: the log has ended the session already (a node that took this one for lost wrote
// its end): it ends without recording anything.
func (c *Core) EndedInLog(now time.Time) rtc.Output {
	if c.closed {
		return rtc.Output{}
	}
	c.closed = true
	return c.Lifecycle.EndedInLog(now)
}

// Tick: the lifecycle's timeouts (media negotiated but never connected, connectivity not back
// within the grace), then the resume grace: a session whose socket has been gone that long
// ends (its tracks are unpublished and the peer leaves, reason "disconnected").
func (c *Core) Tick(now time.Time) rtc.Output {
	if reason := c.Expired(now); reason != "" && !c.closed {
		return c.close(now, reason).Output
	}
	if c.closed || !c.detached || now.Before(c.detachedAt.Add(c.grace)) {
		return rtc.Output{}
	}
	return c.close(now, rtc.ReasonDisconnected).Output
}

// SocketClosed: the WebSocket ended without a leave. With a grace period the session lives
// on without it (the peer stays, media flows, nothing is recorded) until a resume or Tick
// ends it; without one the peer leaves now.
func (c *Core) SocketClosed(now time.Time) Output {
	if c.closed || c.detached {
		return Output{}
	}
	if c.grace <= 0 {
		return c.close(now, rtc.ReasonDisconnected)
	}
	c.detached, c.detachedAt = true, now
	return Output{}
}

// Resume: a join presenting token, opened with claims, wants this session. Accepted (ok) it
// sends a fresh snapshot (joined, resumed) for the new socket; refused, an error to send on
// the new socket before closing it. The token is compared in constant time. A resume that
// arrives after the grace period ended ends the session (if Tick has not yet) and gets
// resume_expired. A resume while the old socket still looks alive replaces it.
func (c *Core) Resume(now time.Time, claims auth.Claims, token string) (Output, bool) {
	var out Output
	if c.detached && !now.Before(c.detachedAt.Add(c.grace)) {
		out = c.close(now, rtc.ReasonDisconnected)
	}
	switch {
	case c.closed || c.resumeToken == "":
		out.Send = append(out.Send, errMsg(CodeResumeExpired, "the session ended (left, failed or not resumed within %v): join again", c.grace))
		return out, false
	case subtle.ConstantTimeCompare([]byte(token), []byte(c.resumeToken)) != 1:
		out.Send = append(out.Send, errMsg(CodeUnauthorized, "resume token does not match the session"))
		return out, false
	case claims.Identity != c.claims.Identity:
		out.Send = append(out.Send, errMsg(CodeForbidden, "the session belongs to another identity"))
		return out, false
	}
	c.detached = false
	if c.ready {
		out.Send = append(out.Send, c.snapshot(true))
	}
	return out, true
}

// close ends the session for reason through the lifecycle (which asks ending for the
// tracks to unpublish before the peer.left).
func (c *Core) close(now time.Time, reason rtc.Reason) Output {
	if c.closed {
		return Output{}
	}
	c.closed = true
	return Output{Output: c.Lifecycle.Close(now, reason)}
}

// ending unpublishes the peer's tracks, in order, before it leaves.
func (c *Core) ending() []events.Payload {
	out := make([]events.Payload, 0, len(c.published)+1)
	for _, t := range c.published {
		out = append(out, events.TrackUnpublished{Peer: c.peer, Track: t})
	}
	return out
}

// layersOrSingle is a track's layer list for its track.published: the single layer "0"
// without simulcast.
func layersOrSingle(layers []string) []string {
	if len(layers) == 0 {
		return []string{rtc.SingleLayer}
	}
	return slices.Clone(layers)
}

// maxCodecName bounds a codec's MIME type in a publish.
const maxCodecName = 64

// validCodec reports whether mime is a MIME type of kind ("video/H264" for video): its
// subtype 1 to 32 letters, digits, '-' or '.'. Whether the node receives it is the shell's
// question.
func validCodec(kind, mime string) bool {
	if len(mime) > maxCodecName {
		return false
	}
	top, sub, ok := strings.Cut(mime, "/")
	if !ok || !strings.EqualFold(top, kind) || len(sub) == 0 || len(sub) > 32 {
		return false
	}
	for _, r := range sub {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '.') {
			return false
		}
	}
	return true
}
