package events

import "encoding/json"

// Event type names. The suffix is the payload version: a change that is not backward compatible
// adds a new version and an upcaster from the old one, never edits an old one.
const (
	TypeRoomCreated         = "room.created.v1"
	TypePeerJoined          = "peer.joined.v1"
	TypePeerLeft            = "peer.left.v1"
	TypeTrackPublished      = "track.published.v1"
	TypeTrackUnpublished    = "track.unpublished.v1"
	TypeSubscriptionStarted = "subscription.started.v1"
	TypeSubscriptionEnded   = "subscription.ended.v1"
	TypePeerUpdated         = "peer.updated.v1"
	TypeTrackUpdated        = "track.updated.v1"
)

// Transport names carried by peers.
const (
	TransportWHIP = "whip"
	TransportWHEP = "whep"
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

// PeerLeft: a peer's session ended.
type PeerLeft struct {
	Peer string `json:"peer"`
	// Reason is why: "closed" (client DELETE), "disconnected" (ICE/DTLS failure), "shutdown".
	Reason string `json:"reason"`
}

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

func (RoomCreated) EventType() string         { return TypeRoomCreated }
func (PeerJoined) EventType() string          { return TypePeerJoined }
func (PeerLeft) EventType() string            { return TypePeerLeft }
func (TrackPublished) EventType() string      { return TypeTrackPublished }
func (TrackUnpublished) EventType() string    { return TypeTrackUnpublished }
func (SubscriptionStarted) EventType() string { return TypeSubscriptionStarted }
func (SubscriptionEnded) EventType() string   { return TypeSubscriptionEnded }
func (PeerUpdated) EventType() string         { return TypePeerUpdated }
func (TrackUpdated) EventType() string        { return TypeTrackUpdated }

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

// registry maps every wire type to its decoder. It is fixed at compile time and never written.
var registry = map[string]codec{
	TypeRoomCreated:         {decodeAs[RoomCreated]},
	TypePeerJoined:          {decodeAs[PeerJoined]},
	TypePeerLeft:            {decodeAs[PeerLeft]},
	TypeTrackPublished:      {decodeAs[TrackPublished]},
	TypeTrackUnpublished:    {decodeAs[TrackUnpublished]},
	TypeSubscriptionStarted: {decodeAs[SubscriptionStarted]},
	TypeSubscriptionEnded:   {decodeAs[SubscriptionEnded]},
	TypePeerUpdated:         {decodeAs[PeerUpdated]},
	TypeTrackUpdated:        {decodeAs[TrackUpdated]},
}

// Types lists every registered wire type, for schema coverage tests and docs.
func Types() []string {
	out := make([]string, 0, len(registry))
	for t := range registry {
		out = append(out, t)
	}
	return out
}
