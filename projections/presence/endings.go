package presence

import (
	"maps"
	"slices"
	"time"

	"github.com/jetmedia/jetmedia/events"
	"github.com/jetmedia/jetmedia/projections"
)

// Ending says why and by whom a lost node's sessions are ended.
type Ending struct {
	// By is the node writing the events (their envelope's node).
	By string
	// Detail is the peer.left cause's text for people ("node b lost: lease expired").
	Detail string
	// Time stamps the events.
	Time time.Time
	// Before, when set, limits the ending to sessions that joined before it: a restarted
	// node's cleanup must not end the sessions its new process already serves.
	Before time.Time
}

// EndSessions returns the events that end every session of node in room, in the order a
// closing session writes them: each of its tracks unpublished, each of its subscriptions
// ended, then peer.left with reason node_lost. The event ids depend only on the room, the
// node, the peer, its join time and the track, so every survivor (and the node itself after
// a restart) derives the same ids and JetStream's duplicate window stores them once.
func EndSessions(r projections.Room, node string, e Ending) ([]events.Envelope, error) {
	var out []events.Envelope
	var joined time.Time
	add := func(p events.Payload, peer string, what ...string) error {
		ev, err := events.New(events.Meta{Room: r.Room, Actor: "system", Node: e.By, Time: e.Time}, p)
		if err != nil {
			return err
		}
		ev.ID = events.EndingID(r.Room, node, peer, joined, what...)
		out = append(out, ev)
		return nil
	}
	for _, id := range r.PeerIDs() {
		p := r.Peers[id]
		if p.Node != node || !e.Before.IsZero() && !p.JoinedAt.Before(e.Before) {
			continue
		}
		joined = p.JoinedAt
		for _, tid := range r.TrackIDs() {
			if t := r.Tracks[tid]; t.Peer == id {
				if err := add(events.TrackUnpublished{Peer: id, Track: tid}, id, "track", tid); err != nil {
					return nil, err
				}
			}
		}
		for _, k := range slices.Sorted(maps.Keys(r.Subs)) {
			if s := r.Subs[k]; s.Peer == id {
				if err := add(events.SubscriptionEnded{Peer: id, Track: s.Track}, id, "sub", s.Track); err != nil {
					return nil, err
				}
			}
		}
		left := events.NewPeerLeft(id, events.ReasonNodeLost)
		left.Cause.Detail = e.Detail
		if err := add(left, id, "left"); err != nil {
			return nil, err
		}
	}
	return out, nil
}
