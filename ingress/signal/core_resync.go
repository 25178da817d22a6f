package signal

import (
	"maps"
	"slices"
	"strings"
	"time"
)

// The kinds of a room's keys, "<room>.<kind>.<id>".
const (
	keyPeer  = "peer"
	keyTrack = "track"
	keySub   = "sub"
)

// resync is the state of a resync of the room (KVResync to KVResynced): what the core knew
// before it, minus what the new watch confirmed so far.
type resync struct {
	peers, tracks, subs map[string]bool
}

// KVResync: the shell replaced the room's watch (the old one stopped delivering); the new
// one's initial state follows as KVPut and KVDeleted, then KVResynced. What the core knows
// and the new state lacks ended while no watch told: KVResynced tells it then. Before the
// first KVReady there is nothing to resync (the new watch's state is the initial one).
func (c *Core) KVResync(time.Time) Output {
	if c.closed || !c.ready {
		return Output{}
	}
	c.resyncing = &resync{peers: setOf(c.peers), tracks: setOf(c.tracks), subs: maps.Clone(c.subs)}
	return Output{}
}

// KVResynced: the new watch's initial state is in. Peers, tracks and this peer's
// subscriptions it did not show are gone: the client hears of them as of any end.
func (c *Core) KVResynced(now time.Time) Output {
	if c.closed {
		return Output{}
	}
	if !c.ready {
		return c.KVReady(now)
	}
	rs := c.resyncing
	c.resyncing = nil
	var out Output
	if rs == nil {
		return out
	}
	// Subscriptions, tracks, then peers, as the projection ends them.
	for _, track := range slices.Sorted(maps.Keys(rs.subs)) {
		out.merge(c.KVDeleted(now, c.room+"."+keySub+"."+c.peer+"."+track))
	}
	for _, id := range slices.Sorted(maps.Keys(rs.tracks)) {
		out.merge(c.KVDeleted(now, c.room+"."+keyTrack+"."+id))
	}
	for _, id := range slices.Sorted(maps.Keys(rs.peers)) {
		out.merge(c.KVDeleted(now, c.room+"."+keyPeer+"."+id))
	}
	return out
}

// confirm notes, during a resync, that the new watch shows key kind/id.
func (c *Core) confirm(kind, id string) {
	rs := c.resyncing
	if rs == nil {
		return
	}
	switch kind {
	case keyPeer:
		delete(rs.peers, id)
	case keyTrack:
		delete(rs.tracks, id)
	case keySub:
		if p, track, ok := strings.Cut(id, "."); ok && p == c.peer {
			delete(rs.subs, track)
		}
	}
}

// merge appends o's messages, subscriptions and events to out's (what KVDeleted returns).
func (out *Output) merge(o Output) {
	out.Send = append(out.Send, o.Send...)
	out.Unsubscribe = append(out.Unsubscribe, o.Unsubscribe...)
	out.Events = append(out.Events, o.Events...)
}

func setOf[V any](m map[string]V) map[string]bool {
	s := make(map[string]bool, len(m))
	for k := range m {
		s[k] = true
	}
	return s
}
