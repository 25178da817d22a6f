package signal

import "encoding/json"

// Version is the protocol version a join names and joined confirms.
const Version = 1

// Message types, client → server.
const (
	TypeJoin      = "join"
	TypeOffer     = "offer"
	TypeAnswer    = "answer"
	TypeCandidate = "candidate"
	TypePublish   = "publish"
	TypeUnpublish = "unpublish"
	// TypeSubscribe and TypeUnsubscribe choose tracks by hand (for auto_subscribe false, or to
	// drop a track auto-subscription took).
	TypeSubscribe   = "subscribe"
	TypeUnsubscribe = "unsubscribe"
	TypeData        = "data"
	TypeLeave       = "leave"
	// TypeMute mutes or unmutes one of the client's own published tracks; TypeUpdate replaces
	// its metadata.
	TypeMute   = "mute"
	TypeUpdate = "update"
	// TypeLayer chooses the simulcast layer of a subscribed track: a quality by hand
	// (setQuality) and the size the client renders it at, from which the node chooses.
	TypeLayer = "layer"
)

// Message types, server → client (offer, answer, candidate and data go both ways).
const (
	TypeJoined           = "joined"
	TypePeerJoined       = "peer_joined"
	TypePeerLeft         = "peer_left"
	TypeTrackPublished   = "track_published"
	TypeTrackUnpublished = "track_unpublished"
	TypeSubscription     = "subscription"
	TypePeerUpdated      = "peer_updated"
	TypeTrackUpdated     = "track_updated"
	// TypeSpeakers lists who is speaking now, loudest first, each time that changes (from
	// the node's ranking of the room's audio levels; absent speakers: nobody).
	TypeSpeakers = "speakers"
	// TypeRedirect answers a join that another node should serve (placement): the client
	// joins again at URL; the socket closes normally after it and nothing was recorded.
	TypeRedirect = "redirect"
	TypeError    = "error"
	// TypeLayersActive tells a simulcast publisher which layers of its track to send: the
	// lowest always, the others while somebody receives them (see Core.LayersWatched).
	TypeLayersActive = "layers_active"
)

// Error codes of error messages.
const (
	CodeBadRequest   = "bad_request"
	CodeUnauthorized = "unauthorized"
	CodeForbidden    = "forbidden"
	CodeNotFound     = "not_found"
	CodeInternal     = "internal"
	// CodeResumeExpired answers a resume whose session has ended (the grace period passed,
	// or it left): the client must join again as a new peer.
	CodeResumeExpired = "resume_expired"
	// CodeRateLimited refuses a message over the peer's rate limit (see Limits); a client
	// that keeps exceeding it is disconnected.
	CodeRateLimited = "rate_limited"
	// CodeUnavailable: the node could not record what the message changed (the event log
	// refuses writes, e.g. its disk is full); nothing changed, retry later.
	CodeUnavailable = "unavailable"
	// CodeFull refuses a join because this node is at its session limit (--max-sessions)
	// and no other node has room (or placement is off): nothing was recorded, retry in a few
	// seconds.
	CodeFull = "full"
)

// Limits of client input.
const (
	// MaxPayload bounds a data message's payload (bytes).
	MaxPayload = 64 << 10
	// MaxMetadata bounds a peer's metadata (bytes), at join and in update.
	MaxMetadata = 4096
	// MaxSource bounds a published track's source label (characters).
	MaxSource = 64
	// MaxRedirectURL bounds a redirect message's URL (bytes): the client's query goes along
	// to the other node, so a join whose query would make it longer is refused.
	MaxRedirectURL = 2048
)

// ClientMessage is any client → server message; Type says which fields are used.
type ClientMessage struct {
	Type string `json:"type"`
	// join
	Version       int    `json:"version,omitempty"`
	Token         string `json:"token,omitempty"`
	Room          string `json:"room,omitempty"`
	Metadata      string `json:"metadata,omitempty"`
	AutoSubscribe *bool  `json:"auto_subscribe,omitempty"`
	// Resume is the resume_token of an earlier joined: re-attach to that session.
	Resume string `json:"resume,omitempty"`
	// offer, answer, candidate
	SDP       string          `json:"sdp,omitempty"`
	Candidate json.RawMessage `json:"candidate,omitempty"`
	// publish (kind, source, muted, simulcast), mute (track, muted)
	Kind string `json:"kind,omitempty"`
	// Simulcast are the layers (RIDs) a video publish sends: the server's offer asks the
	// client's transceiver for one encoding each.
	Simulcast []string `json:"simulcast,omitempty"`
	// Codec is the MIME type a publish sends in ("video/H264"): the server's offer then lists
	// only that codec (and its RTX), so the client cannot start in another one.
	Codec  string `json:"codec,omitempty"`
	Source string `json:"source,omitempty"`
	Muted  *bool  `json:"muted,omitempty"`
	// unpublish, subscribe, unsubscribe, mute, layer
	Track string `json:"track,omitempty"`
	// layer: Quality is the layer id wanted ("" automatic; absent: unchanged); Width and
	// Height the rendered size in pixels (absent: unchanged, 0: unknown).
	Quality *string `json:"quality,omitempty"`
	Width   *int    `json:"width,omitempty"`
	Height  *int    `json:"height,omitempty"`
	// data
	To      string  `json:"to,omitempty"`
	Payload *string `json:"payload,omitempty"`
}

// PeerInfo is a peer as clients see it.
type PeerInfo struct {
	Peer      string `json:"peer"`
	Identity  string `json:"identity,omitempty"`
	Name      string `json:"name,omitempty"`
	Transport string `json:"transport"`
	Metadata  string `json:"metadata,omitempty"`
}

// TrackInfo is a published track as clients see it.
type TrackInfo struct {
	Track string `json:"track"`
	Peer  string `json:"peer"`
	Kind  string `json:"kind"`
	Codec string `json:"codec"`
	// Source is the publisher's label; Muted is always sent (false when absent in older
	// servers' messages).
	Source string `json:"source,omitempty"`
	Muted  bool   `json:"muted"`
	// Layers are the track's layer ids ("0" without simulcast); absent from older servers.
	Layers []string `json:"layers,omitempty"`
}

// SpeakerInfo is a peer speaking on one of its audio tracks, with the track's smoothed level
// in -dBov (0 loudest, 127 silence).
type SpeakerInfo struct {
	Peer  string `json:"peer"`
	Track string `json:"track"`
	Level uint8  `json:"level"`
}

// LayersActive names the layers of one of the client's own simulcast tracks it should send
// (lowest first); the others it may stop encoding until a later message names them again.
type LayersActive struct {
	Track  string   `json:"track"`
	Layers []string `json:"layers"`
}

// ServerMessage is any server → client message; Type says which fields are used.
type ServerMessage struct {
	Type string `json:"type"`
	// joined
	Version int         `json:"version,omitempty"`
	Room    string      `json:"room,omitempty"`
	Self    *PeerInfo   `json:"self,omitempty"`
	Grants  []string    `json:"grants,omitempty"`
	Peers   []PeerInfo  `json:"peers,omitempty"`
	Tracks  []TrackInfo `json:"tracks,omitempty"`
	// ResumeToken lets the client re-attach to this session after its socket drops; Resumed
	// is set on the joined that answers a resume.
	ResumeToken string `json:"resume_token,omitempty"`
	Resumed     bool   `json:"resumed,omitempty"`
	// peer_joined, peer_left, peer_updated
	Peer *PeerInfo `json:"peer,omitempty"`
	// track_published, track_unpublished, track_updated, subscription
	Track *TrackInfo `json:"track,omitempty"`
	// subscription: "active" or "ended"
	State string `json:"state,omitempty"`
	// offer, answer, candidate
	SDP       string          `json:"sdp,omitempty"`
	Candidate json.RawMessage `json:"candidate,omitempty"`
	// data
	From    string  `json:"from,omitempty"`
	To      string  `json:"to,omitempty"`
	Payload *string `json:"payload,omitempty"`
	// speakers, ranked (absent: nobody speaks)
	Speakers []SpeakerInfo `json:"speakers,omitempty"`
	// layers_active
	LayersActive *LayersActive `json:"layers_active,omitempty"`
	// redirect: the WebSocket URL to join at instead
	URL string `json:"url,omitempty"`
	// error
	Code    string `json:"code,omitempty"`
	Message string `json:"message,omitempty"`
}

// DataMessage is what travels on a room's data subjects (dm.<room>, dm.<room>.<peer>).
type DataMessage struct {
	From    string `json:"from"`
	To      string `json:"to,omitempty"`
	Payload string `json:"payload"`
}
