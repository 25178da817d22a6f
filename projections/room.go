package projections

import (
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/jetmedia/jetmedia/events"
)

// Room is the state of one room folded from its events.
type Room struct {
	Room      string    `json:"room"`
	CreatedAt time.Time `json:"created_at"`
	// Node is the node that created the room.
	Node string `json:"node"`
	// LastSeq is the stream sequence of the last event folded in: the projection's per-room
	// checkpoint, which makes redelivered events no-ops.
	LastSeq uint64 `json:"last_seq"`
	// LastEvent is the time of the last event folded in.
	LastEvent time.Time `json:"last_event"`

	Peers  map[string]Peer         `json:"-"`
	Tracks map[string]Track        `json:"-"`
	Subs   map[string]Subscription `json:"-"` // key: peer + "." + track
}

// Peer is one participant session.
type Peer struct {
	Peer       string `json:"peer"`
	Transport  string `json:"transport"`
	Role       string `json:"role"`
	Node       string `json:"node"`
	RemoteAddr string `json:"remote_addr,omitempty"`
	UserAgent  string `json:"user_agent,omitempty"`
	// Identity and Name come from the token that opened the session (absent before tokens).
	Identity string    `json:"identity,omitempty"`
	Name     string    `json:"name,omitempty"`
	JoinedAt time.Time `json:"joined_at"`
	// Metadata is the application's metadata: from peer.joined, replaced by peer.updated.
	Metadata string `json:"metadata,omitempty"`
}

// Track is one published track.
type Track struct {
	Track       string    `json:"track"`
	Peer        string    `json:"peer"`
	Kind        string    `json:"kind"`
	Codec       string    `json:"codec"`
	ClockRate   uint32    `json:"clock_rate"`
	Channels    uint16    `json:"channels,omitempty"`
	FmtpLine    string    `json:"fmtp,omitempty"`
	Layers      []string  `json:"layers"`
	PublishedAt time.Time `json:"published_at"`
	// Source is the publisher's label (camera, screen, mic...); Muted starts from
	// track.published and follows track.updated.
	Source string `json:"source,omitempty"`
	Muted  bool   `json:"muted,omitempty"`
}

// Subscription is one peer receiving one track.
type Subscription struct {
	Peer      string    `json:"peer"`
	Track     string    `json:"track"`
	Publisher string    `json:"publisher"`
	Since     time.Time `json:"since"`
}

// NewRoom returns the empty state of a room that has seen no events.
func NewRoom(room string) Room {
	return Room{Room: room, Peers: map[string]Peer{}, Tracks: map[string]Track{}, Subs: map[string]Subscription{}}
}

// Exists reports whether any event has been folded in.
func (r Room) Exists() bool { return r.LastSeq > 0 }

// Clone returns a deep copy, so a fold never changes its input.
func (r Room) Clone() Room {
	c := r
	c.Peers = maps.Clone(r.Peers)
	c.Tracks = maps.Clone(r.Tracks)
	c.Subs = maps.Clone(r.Subs)
	if c.Peers == nil {
		c.Peers = map[string]Peer{}
	}
	if c.Tracks == nil {
		c.Tracks = map[string]Track{}
	}
	if c.Subs == nil {
		c.Subs = map[string]Subscription{}
	}
	return c
}

// PeerIDs returns the peers sorted, for stable output.
func (r Room) PeerIDs() []string { return slices.Sorted(maps.Keys(r.Peers)) }

// TrackIDs returns the tracks sorted.
func (r Room) TrackIDs() []string { return slices.Sorted(maps.Keys(r.Tracks)) }

// SubKey is the Subs map key of peer's subscription to track.
func SubKey(peer, track string) string { return peer + "." + track }

// Fold applies one event to a room's state and returns the new state; r is not modified. An
// event at or below LastSeq (a redelivery) leaves the state as it is. Unknown event types are
// skipped (a newer writer's events must not stop an older reader) but still advance LastSeq.
func Fold(r Room, e events.Envelope) (Room, error) {
	if e.Seq != 0 && e.Seq <= r.LastSeq {
		return r, nil
	}
	n := r.Clone()
	if _, err := foldInPlace(&n, e); err != nil {
		return r, err
	}
	return n, nil
}

// foldInPlace is Fold changing r itself, for a runner that owns its state: it reports whether
// e changed r (false for a redelivery), and leaves r as it was on error.
func foldInPlace(r *Room, e events.Envelope) (bool, error) {
	if e.Seq != 0 && e.Seq <= r.LastSeq {
		return false, nil
	}
	if e.Room != r.Room {
		return false, fmt.Errorf("projections: event %s of room %s folded into room %s", e.ID, e.Room, r.Room)
	}
	p, err := e.Payload()
	if err != nil && !errorsIsUnknown(err) {
		return false, fmt.Errorf("projections: fold %s: %w", e.ID, err)
	}
	if e.Seq != 0 { // an event not read from the log (no sequence) keeps the checkpoint
		r.LastSeq = e.Seq
	}
	r.LastEvent = e.Time
	if err == nil {
		r.apply(e, p)
	}
	return true, nil
}

// apply changes the room by one known event's payload.
func (r *Room) apply(e events.Envelope, p events.Payload) {
	switch p := p.(type) {
	case events.RoomCreated:
		if r.CreatedAt.IsZero() {
			r.CreatedAt, r.Node = e.Time, p.Node
		}
	case events.PeerJoined:
		r.Peers[p.Peer] = Peer{Peer: p.Peer, Transport: p.Transport, Role: p.Role, Node: p.Node,
			RemoteAddr: p.RemoteAddr, UserAgent: p.UserAgent, Identity: p.Identity, Name: p.Name, JoinedAt: e.Time,
			Metadata: p.Metadata}
	case events.PeerUpdated:
		// An update of a peer that has left (or never joined) changes nothing.
		if peer, ok := r.Peers[p.Peer]; ok {
			peer.Metadata = p.Metadata
			r.Peers[p.Peer] = peer
		}
	case events.PeerLeft:
		r.removePeer(p.Peer)
	case events.TrackPublished:
		r.Tracks[p.Track] = Track{Track: p.Track, Peer: p.Peer, Kind: p.Kind, Codec: p.Codec,
			ClockRate: p.ClockRate, Channels: p.Channels, FmtpLine: p.FmtpLine,
			Layers: slices.Clone(p.Layers), PublishedAt: e.Time, Source: p.Source, Muted: p.Muted}
	case events.TrackUpdated:
		// Only the track's publisher can mute it; an update of an unpublished track is void.
		if t, ok := r.Tracks[p.Track]; ok && t.Peer == p.Peer {
			t.Muted = p.Muted
			r.Tracks[p.Track] = t
		}
	case events.TrackUnpublished:
		r.removeTrack(p.Track)
	case events.SubscriptionStarted:
		r.Subs[SubKey(p.Peer, p.Track)] = Subscription{Peer: p.Peer, Track: p.Track, Publisher: p.Publisher, Since: e.Time}
	case events.SubscriptionEnded:
		delete(r.Subs, SubKey(p.Peer, p.Track))
	}
}

// removePeer takes a peer that left out of the room, with its tracks and subscriptions,
// whether or not the writer managed to record their end (a crashed node cannot).
func (r *Room) removePeer(peer string) {
	delete(r.Peers, peer)
	for id, t := range r.Tracks {
		if t.Peer == peer {
			delete(r.Tracks, id)
		}
	}
	for k, s := range r.Subs {
		if s.Peer == peer || s.Publisher == peer {
			delete(r.Subs, k)
		}
	}
}

// removeTrack takes an unpublished track out of the room, with its subscriptions.
func (r *Room) removeTrack(track string) {
	delete(r.Tracks, track)
	for k, s := range r.Subs {
		if s.Track == track {
			delete(r.Subs, k)
		}
	}
}

// FoldAll folds events in order into a room that has seen none.
func FoldAll(room string, evs []events.Envelope) (Room, error) {
	r := NewRoom(room)
	for _, e := range evs {
		var err error
		if r, err = Fold(r, e); err != nil {
			return r, err
		}
	}
	return r, nil
}
