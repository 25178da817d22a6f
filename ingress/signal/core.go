package signal

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/jetmedia/jetmedia/events"
	"github.com/jetmedia/jetmedia/pipeline/auth"
	"github.com/jetmedia/jetmedia/pipeline/rtc"
)

// TrackSpec is what the shell needs to subscribe to a published track.
type TrackSpec struct {
	Track     string `json:"track"`
	Peer      string `json:"peer"`
	Kind      string `json:"kind"`
	Codec     string `json:"codec"`
	ClockRate uint32 `json:"clock_rate"`
	Channels  uint16 `json:"channels,omitempty"`
	FmtpLine  string `json:"fmtp,omitempty"`
}

// peerRecord is the part of a "<room>.peer.<p>" KV value the core reads.
type peerRecord struct {
	Peer      string `json:"peer"`
	Transport string `json:"transport"`
	Identity  string `json:"identity,omitempty"`
	Name      string `json:"name,omitempty"`
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
}

// Core is the sans-IO state machine of one SDK session: joined from the start (the shell
// creates it once the join's token is verified), closed once.
type Core struct {
	room, peer, node string
	claims           auth.Claims
	auto             bool

	closed bool
	// ready: the KV watch has delivered the room's initial state and joined was sent.
	ready bool

	peers  map[string]PeerInfo
	tracks map[string]TrackSpec
	// subscribed tracks (forwarded to this client), and announced publishes not yet started.
	subscribed map[string]bool
	announced  []ClientMessage
	published  []string
}

// NewCore returns the core of peer's session in room, opened with claims.
func NewCore(room, peer, node string, claims auth.Claims, autoSubscribe bool) *Core {
	return &Core{room: room, peer: peer, node: node, claims: claims, auto: autoSubscribe,
		peers: map[string]PeerInfo{}, tracks: map[string]TrackSpec{}, subscribed: map[string]bool{}}
}

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
func (c *Core) Joined(_ time.Time, remoteAddr, userAgent string) Output {
	return Output{Output: rtc.Output{Events: []events.Payload{events.PeerJoined{
		Peer: c.peer, Transport: "sdk", Role: c.role(), Node: c.node, RemoteAddr: remoteAddr,
		UserAgent: userAgent, Identity: c.claims.Identity, Name: c.claims.Name,
	}}}}
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
	switch kind {
	case "peer":
		var p peerRecord
		if json.Unmarshal(value, &p) != nil {
			return out
		}
		info := PeerInfo{Peer: id, Identity: p.Identity, Name: p.Name, Transport: p.Transport}
		_, known := c.peers[id]
		c.peers[id] = info
		if !known && c.ready && id != c.peer {
			out.Send = append(out.Send, ServerMessage{Type: TypePeerJoined, Peer: &info})
		}
	case "track":
		var t TrackSpec
		if json.Unmarshal(value, &t) != nil {
			return out
		}
		t.Track = id
		_, known := c.tracks[id]
		c.tracks[id] = t
		if !known && c.ready {
			out.Send = append(out.Send, ServerMessage{Type: TypeTrackPublished, Track: trackInfo(t)})
			c.autoSubscribe(&out, t)
		}
	case "sub":
		var s subRecord
		if json.Unmarshal(value, &s) != nil || s.Peer != c.peer || !c.ready {
			return out
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
	self := PeerInfo{Peer: c.peer, Identity: c.claims.Identity, Name: c.claims.Name, Transport: "sdk"}
	j := ServerMessage{Type: TypeJoined, Version: Version, Room: c.room, Self: &self}
	for _, g := range c.claims.Grants {
		j.Grants = append(j.Grants, string(g))
	}
	for _, id := range slices.Sorted(maps.Keys(c.peers)) {
		if id != c.peer {
			j.Peers = append(j.Peers, c.peers[id])
		}
	}
	ids := slices.Sorted(maps.Keys(c.tracks))
	for _, id := range ids {
		j.Tracks = append(j.Tracks, *trackInfo(c.tracks[id]))
	}
	out.Send = append(out.Send, j)
	for _, id := range ids {
		c.autoSubscribe(&out, c.tracks[id])
	}
	return out
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
	return &TrackInfo{Track: t.Track, Peer: t.Peer, Kind: t.Kind, Codec: t.Codec}
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
	var out Output
	if c.closed {
		return out
	}
	switch m.Type {
	case TypePublish:
		if !c.claims.Has(auth.Publish) {
			out.Send = append(out.Send, errMsg(CodeForbidden, "token lacks the %q grant", auth.Publish))
			return out
		}
		if m.Kind != "audio" && m.Kind != "video" {
			out.Send = append(out.Send, errMsg(CodeBadRequest, "publish: kind must be audio or video, not %q", m.Kind))
			return out
		}
		c.announced = append(c.announced, m)
		out.Receive = append(out.Receive, m.Kind)
	case TypeUnpublish:
		i := slices.Index(c.published, m.Track)
		if i < 0 {
			out.Send = append(out.Send, errMsg(CodeNotFound, "unpublish: track %q is not published by this peer", m.Track))
			return out
		}
		c.published = slices.Delete(c.published, i, i+1)
		out.Events = append(out.Events, events.TrackUnpublished{Peer: c.peer, Track: m.Track})
		out.Unpublished = append(out.Unpublished, m.Track)
	case TypeSubscribe:
		t, ok := c.tracks[m.Track]
		switch {
		case !c.claims.Has(auth.Subscribe):
			out.Send = append(out.Send, errMsg(CodeForbidden, "token lacks the %q grant", auth.Subscribe))
		case !ok || t.Peer == c.peer:
			out.Send = append(out.Send, errMsg(CodeNotFound, "subscribe: no track %q of another peer in room %q", m.Track, c.room))
		case !c.subscribed[m.Track]:
			c.subscribed[m.Track] = true
			out.Subscribe = append(out.Subscribe, t)
			out.Events = append(out.Events, events.SubscriptionStarted{Peer: c.peer, Track: t.Track, Publisher: t.Peer})
		}
	case TypeUnsubscribe:
		if !c.subscribed[m.Track] {
			out.Send = append(out.Send, errMsg(CodeNotFound, "unsubscribe: not subscribed to track %q", m.Track))
			return out
		}
		delete(c.subscribed, m.Track)
		out.Unsubscribe = append(out.Unsubscribe, m.Track)
		out.Events = append(out.Events, events.SubscriptionEnded{Peer: c.peer, Track: m.Track})
	case TypeData:
		switch {
		case !c.claims.Has(auth.Data):
			out.Send = append(out.Send, errMsg(CodeForbidden, "token lacks the %q grant", auth.Data))
		case m.Payload == nil:
			out.Send = append(out.Send, errMsg(CodeBadRequest, "data: payload is required"))
		case len(*m.Payload) > MaxPayload:
			out.Send = append(out.Send, errMsg(CodeBadRequest, "data: payload has %d bytes, at most %d", len(*m.Payload), MaxPayload))
		case m.To != "" && (m.To == c.peer || c.peers[m.To] == (PeerInfo{})):
			out.Send = append(out.Send, errMsg(CodeNotFound, "data: no peer %q in room %q", m.To, c.room))
		default:
			out.Data = append(out.Data, DataMessage{From: c.peer, To: m.To, Payload: *m.Payload})
		}
	case TypeLeave:
		return c.close(now, "closed")
	case TypeJoin:
		out.Send = append(out.Send, errMsg(CodeBadRequest, "already joined"))
	default:
		out.Send = append(out.Send, errMsg(CodeBadRequest, "unknown message type %q", m.Type))
	}
	return out
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
// kind was announced; its track.published goes to the log.
func (c *Core) TrackStarted(_ time.Time, t TrackSpec) (Output, bool) {
	var out Output
	if c.closed {
		return out, false
	}
	i := slices.IndexFunc(c.announced, func(m ClientMessage) bool { return m.Kind == t.Kind })
	if i < 0 {
		out.Send = append(out.Send, errMsg(CodeBadRequest, "a %s track arrived without a publish message: announce tracks before adding them", t.Kind))
		return out, false
	}
	c.announced = slices.Delete(c.announced, i, i+1)
	c.published = append(c.published, t.Track)
	out.Events = append(out.Events, events.TrackPublished{Peer: c.peer, Track: t.Track, Kind: t.Kind,
		Codec: t.Codec, ClockRate: t.ClockRate, Channels: t.Channels, FmtpLine: t.FmtpLine, Layers: []string{"0"}})
	return out, true
}

// Published lists the tracks this peer publishes.
func (c *Core) Published() []string { return c.published }

// Subscribed reports whether the core forwards track to this client.
func (c *Core) Subscribed(track string) bool { return c.subscribed[track] }

// Connected, Disconnected: the PeerConnection's state; the WebSocket, not ICE, is the session.
func (c *Core) Connected(time.Time) rtc.Output    { return rtc.Output{} }
func (c *Core) Disconnected(time.Time) rtc.Output { return rtc.Output{} }

// Failed: the PeerConnection failed: the peer leaves.
func (c *Core) Failed(now time.Time) rtc.Output { return c.close(now, "disconnected").Output }

// Shutdown: the node is stopping.
func (c *Core) Shutdown(now time.Time) rtc.Output { return c.close(now, "shutdown").Output }

// Tick: nothing is timed yet (resume within a grace period is future work).
func (c *Core) Tick(time.Time) rtc.Output { return rtc.Output{} }

// SocketClosed: the WebSocket ended without a leave.
func (c *Core) SocketClosed(now time.Time) Output { return c.close(now, "disconnected") }

func (c *Core) close(_ time.Time, reason string) Output {
	var out Output
	if c.closed {
		return out
	}
	c.closed = true
	for _, t := range c.published {
		out.Events = append(out.Events, events.TrackUnpublished{Peer: c.peer, Track: t})
	}
	out.Events = append(out.Events, events.NewPeerLeft(c.peer, reason))
	out.Close = true
	return out
}
