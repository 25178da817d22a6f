package events

import "encoding/json"

// Event type names. The suffix is the payload version: a change that is not backward compatible
// adds a new version and an upcaster from the old one, never edits an old one.
const (
	TypeRoomCreated         = "room.created.v1"
	TypePeerJoined          = "peer.joined.v1"
	TypePeerLeft            = "peer.left.v2"
	TypeTrackPublished      = "track.published.v1"
	TypeTrackUnpublished    = "track.unpublished.v1"
	TypeSubscriptionStarted = "subscription.started.v1"
	TypeSubscriptionEnded   = "subscription.ended.v1"
	TypePeerUpdated         = "peer.updated.v1"
	TypeTrackUpdated        = "track.updated.v1"
	TypeSpeakerChanged      = "speaker.changed.v1"
	TypeDTMFReceived        = "dtmf.received.v1"
)

// TypePeerLeftV1 is the first version of peer.left, still in older logs. Decoding one upcasts
// it to PeerLeft (v2); writers emit v2.
const TypePeerLeftV1 = "peer.left.v1"

// Transport names carried by peers.
const (
	TransportWHIP = "whip"
	TransportWHEP = "whep"
	// TransportRTMP: a publisher pushing FLV over RTMP (OBS, ffmpeg); see ingress/rtmp.
	TransportRTMP = "rtmp"
	// TransportSIP: a phone call into the room through the SIP gateway; see ingress/sip.
	TransportSIP = "sip"
)

// RoomCreated is the first event of every room.
type RoomCreated struct {
	// Node is the node that first saw the room.
	Node string `json:"node"`
}

// PeerJoined: a peer (publisher or viewer session) entered the room.
type PeerJoined struct {
	Peer      string `json:"peer"`
	Transport string `json:"transport"`
	// Role is "publisher" or "viewer" for WHIP/WHEP sessions.
	Role       string `json:"role"`
	Node       string `json:"node"`
	RemoteAddr string `json:"remote_addr,omitempty"`
	UserAgent  string `json:"user_agent,omitempty"`
	// Identity and Name are the token's identity (sub) and display name, when the session was
	// opened with a token (added as optional fields: older events lack them).
	Identity string `json:"identity,omitempty"`
	Name     string `json:"name,omitempty"`
	// Metadata is the application's metadata the peer joined with (room SDK; optional field,
	// absent when empty).
	Metadata string `json:"metadata,omitempty"`
}

// PeerUpdated: a peer replaced its application metadata.
type PeerUpdated struct {
	Peer string `json:"peer"`
	// Metadata is the new value (empty: cleared).
	Metadata string `json:"metadata"`
}

// PeerLeft: a peer's session ended (peer.left.v2).
//
// v2 adds Cause, required on the wire: which side ended the session. v1 had only Reason, which
// mixed what happened with who did it; a v1 event decodes to this type with Cause derived from
// its Reason (see PeerLeftV1.Upcast). Writers build it with NewPeerLeft.
type PeerLeft struct {
	Peer string `json:"peer"`
	// Reason is what happened: "closed" (the client ended it), "disconnected" (ICE/DTLS
	// failure or a dropped socket), "shutdown" (node stopping), "timeout" (never connected, or
	// not back within the grace period), "kicked" (removed by an operator), "node_lost" (the
	// node that served it died or restarted: another node, or the node itself at start, ended
	// it in the log; see ReasonNodeLost), "unpublished" (a viewer whose tracks all ended).
	Reason string     `json:"reason"`
	Cause  LeaveCause `json:"cause"`
}

// LeaveCause says who ended a peer's session.
type LeaveCause struct {
	// By is the side that ended it: "client", "network", "server" or "operator".
	By string `json:"by"`
	// Detail is optional free text for people ("ICE failed", "DELETE"); never parse it.
	Detail string `json:"detail,omitempty"`
}

// Who ends a session, the values of LeaveCause.By.
const (
	ByClient   = "client"
	ByNetwork  = "network"
	ByServer   = "server"
	ByOperator = "operator"
)

// ReasonNodeLost is the peer.left reason written for a session whose node stopped serving it
// without saying so (killed, crashed, cut off): a surviving node whose lease on the node
// expired, or the node itself restarting on its data, ends the session in the log. Its cause is
// the server side.
const ReasonNodeLost = "node_lost"

// ReasonUnpublished is the peer.left reason of a viewer session (WHEP) the server ended because
// every track it played was unpublished.
const ReasonUnpublished = "unpublished"

// CauseOf is the side that ends a session for a peer.left reason; "" for an unknown reason.
// Writers and the v1 upcaster share it, so an upcast v1 event reads like a v2 one written
// for the same reason.
func CauseOf(reason string) string {
	switch reason {
	case "closed":
		return ByClient
	case "disconnected", "timeout":
		return ByNetwork
	case "shutdown", ReasonNodeLost, ReasonUnpublished:
		return ByServer
	case "kicked":
		return ByOperator
	}
	return ""
}

// NewPeerLeft is the peer.left event for a peer whose session ended for reason.
func NewPeerLeft(peer, reason string) PeerLeft {
	return PeerLeft{Peer: peer, Reason: reason, Cause: LeaveCause{By: CauseOf(reason)}}
}

// PeerLeftV1 is the payload of peer.left.v1, as older logs hold it. Only tools and tests that
// reproduce a pre-v2 log write it; readers never see it, because decoding upcasts it.
type PeerLeftV1 struct {
	Peer   string `json:"peer"`
	Reason string `json:"reason"`
}

// Upcast turns a v1 payload into the current PeerLeft.
func (v PeerLeftV1) Upcast() PeerLeft { return NewPeerLeft(v.Peer, v.Reason) }

// TrackPublished: a peer started sending a track; its RTP rides md.<room>.<track>.<layer>.
type TrackPublished struct {
	Peer  string `json:"peer"`
	Track string `json:"track"`
	// Kind is "audio" or "video".
	Kind string `json:"kind"`
	// Codec is the negotiated MIME type, e.g. "video/VP8".
	Codec     string `json:"codec"`
	ClockRate uint32 `json:"clock_rate"`
	Channels  uint16 `json:"channels,omitempty"`
	FmtpLine  string `json:"fmtp,omitempty"`
	// Layers are the RTP layer tokens the track is sent on ("0" without simulcast).
	Layers []string `json:"layers"`
	// Source labels the track ("camera", "screen", "mic" or free text) and Muted is whether it
	// started muted (room SDK; optional fields, absent when empty or false).
	Source string `json:"source,omitempty"`
	Muted  bool   `json:"muted,omitempty"`
}

// TrackUpdated: a published track was muted or unmuted by its publisher.
type TrackUpdated struct {
	Peer  string `json:"peer"`
	Track string `json:"track"`
	Muted bool   `json:"muted"`
}

// SpeakerChanged: a published audio track started or stopped speaking, as the publisher's
// node measured it from the track's audio-level header extension (RFC 6464). The log gets a
// change only, never the levels: a track starts after its smoothed level stays at -45 dBov or
// louder, stops after a second below -55 dBov, and stays stopped at least 250 ms, so a talker
// adds about two events per turn and at most two per 1.25 s (docs/audio.md). Live speaker
// rankings reach clients on the media plane, not through the log.
type SpeakerChanged struct {
	Peer  string `json:"peer"`
	Track string `json:"track"`
	// Speaking is whether the track is speaking from now on.
	Speaking bool `json:"speaking"`
	// Level is the track's smoothed level when it changed, -dBov: 0 is the loudest, 127
	// silence.
	Level uint8 `json:"level"`
}

// TrackUnpublished: a published track ended.
type TrackUnpublished struct {
	Peer  string `json:"peer"`
	Track string `json:"track"`
}

// SubscriptionStarted: a peer started receiving a track.
type SubscriptionStarted struct {
	Peer  string `json:"peer"`
	Track string `json:"track"`
	// Publisher is the peer that publishes the track.
	Publisher string `json:"publisher"`
}

// SubscriptionEnded: a peer stopped receiving a track.
type SubscriptionEnded struct {
	Peer  string `json:"peer"`
	Track string `json:"track"`
}

// DTMFReceived: a SIP caller pressed a key (an RFC 4733 telephone-event, recorded once per
// key press when its end arrives).
type DTMFReceived struct {
	Peer string `json:"peer"`
	// Digit is one of 0-9, *, #, A-D.
	Digit string `json:"digit"`
	// DurationMS is how long the key was held, as the caller's RTP said (0 when unknown).
	DurationMS int `json:"duration_ms"`
}

func (DTMFReceived) EventType() string        { return TypeDTMFReceived }
func (RoomCreated) EventType() string         { return TypeRoomCreated }
func (PeerJoined) EventType() string          { return TypePeerJoined }
func (PeerLeft) EventType() string            { return TypePeerLeft }
func (PeerLeftV1) EventType() string          { return TypePeerLeftV1 }
func (TrackPublished) EventType() string      { return TypeTrackPublished }
func (TrackUnpublished) EventType() string    { return TypeTrackUnpublished }
func (SubscriptionStarted) EventType() string { return TypeSubscriptionStarted }
func (SubscriptionEnded) EventType() string   { return TypeSubscriptionEnded }
func (PeerUpdated) EventType() string         { return TypePeerUpdated }
func (TrackUpdated) EventType() string        { return TypeTrackUpdated }
func (SpeakerChanged) EventType() string      { return TypeSpeakerChanged }

type codec struct {
	decode func(json.RawMessage) (Payload, error)
}

func decodeAs[T Payload](raw json.RawMessage) (Payload, error) {
	var v T
	if err := json.Unmarshal(raw, &v); err != nil {
		return nil, err
	}
	return v, nil
}

// upcastFrom decodes an old version's payload and turns it into the current one, so that
// readers (folds, read models, tools) handle one Go type per event whatever version the log
// holds.
func upcastFrom[Old Payload, New Payload](up func(Old) New) func(json.RawMessage) (Payload, error) {
	return func(raw json.RawMessage) (Payload, error) {
		var v Old
		if err := json.Unmarshal(raw, &v); err != nil {
			return nil, err
		}
		return up(v), nil
	}
}

// registry maps every wire type to its decoder. It is fixed at compile time and never written.
var registry = map[string]codec{
	TypeRoomCreated:         {decodeAs[RoomCreated]},
	TypePeerJoined:          {decodeAs[PeerJoined]},
	TypePeerLeft:            {decodeAs[PeerLeft]},
	TypePeerLeftV1:          {upcastFrom(PeerLeftV1.Upcast)},
	TypeTrackPublished:      {decodeAs[TrackPublished]},
	TypeTrackUnpublished:    {decodeAs[TrackUnpublished]},
	TypeSubscriptionStarted: {decodeAs[SubscriptionStarted]},
	TypeSubscriptionEnded:   {decodeAs[SubscriptionEnded]},
	TypePeerUpdated:         {decodeAs[PeerUpdated]},
	TypeTrackUpdated:        {decodeAs[TrackUpdated]},
	TypeSpeakerChanged:      {decodeAs[SpeakerChanged]},
	TypeDTMFReceived:        {decodeAs[DTMFReceived]},
}

// Types lists every registered wire type, for schema coverage tests and docs.
func Types() []string {
	out := make([]string, 0, len(registry))
	for t := range registry {
		out = append(out, t)
	}
	return out
}
