package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetmedia/jetmedia/egress/whep"
	"github.com/jetmedia/jetmedia/pipeline/eventlog"
	"github.com/jetmedia/jetmedia/projections"
)

// regionCatalog is an edge's view of the region's rooms, for WHEP. An edge's own rooms bucket
// holds the edge's sessions only (its log lives in its own domain; the region sources it, not
// the other way round), so a WHEP viewer on an edge of a room published in the region or on
// another edge found no publisher there and was told to retry (409) for good: issue 13's
// topology (a publisher on one region's edge, viewers on the other region's edge) played on
// the region's nodes but not on the edge. The region's bucket and log, read over the edge's
// link under the region's JetStream domain, answer what the edge's own do not hold; the tracks
// the edge plays from them are remembered, and their ends judged by the region's bucket (the
// edge's own never held them, so it calls them gone at once). Both read the region's room
// with a watch of its keys: direct gets (key reads, the room's newest event) from an edge get
// no answer when the region's streams live across a gateway (nats-server drops a leaf's
// message to a queue group across gateways; docs/cluster.md, "Direct gets over an edge's
// link", pipeline/natsnode's TestEdgeDirectGetAcrossGateway). A track's entry is dropped once the region says it is gone, or once no
// viewer of the edge has played it for forgetAfter (the recheck tells what is played).
//
// While the link is down the region does not answer: the edge's own rooms play as before, a
// new viewer of another room is told to retry, and the region's tracks the edge plays are not
// judged gone (their media stopped with the link; they end once the region says they did).
// Their ends reach the edge through the edge's watch of the region's bucket over the link
// (Node.watchRegionTrackEnds, within about a second; after an outage, once it is back in
// place); the WHEP recheck (whep.RecheckEvery) asks the region's bucket too, as the safety
// net under that watch, and logs what it finds first at Debug (gone).
type regionCatalog struct {
	js  jetstream.JetStream
	kv  atomic.Pointer[jetstream.KeyValue] // the region's rooms bucket, opened at the first call that can
	log *slog.Logger

	mu     sync.Mutex
	played map[string]map[string]time.Time // room -> track served from the region -> last known played
}

// forgetAfter is how long a track served from the region is remembered after the last round
// of the recheck that saw a viewer play it: long enough for a viewer that has just chosen it
// to be counted as playing it, so its end is still judged by the region's bucket.
const forgetAfter = time.Minute

func newRegionCatalog(js jetstream.JetStream, log *slog.Logger) *regionCatalog {
	return &regionCatalog{js: js, log: log, played: map[string]map[string]time.Time{}}
}

// bucket is the region's rooms bucket.
func (r *regionCatalog) bucket(ctx context.Context) (jetstream.KeyValue, error) {
	if kv := r.kv.Load(); kv != nil {
		return *kv, nil
	}
	kv, err := r.js.KeyValue(ctx, eventlog.BucketRooms)
	if err != nil {
		return nil, fmt.Errorf("app: the region's bucket %s: %w", eventlog.BucketRooms, err)
	}
	r.kv.Store(&kv)
	return kv, nil
}

// published answers from the region's catalog what the edge's own could not (its answer was
// own); when the region cannot say, own stands.
func (r *regionCatalog) published(ctx context.Context, room, peer string, own error) (string, []whep.TrackSpec, error) {
	publisher, specs, err := r.publishedInRegion(ctx, room, peer)
	if err != nil {
		if !errors.Is(err, whep.ErrNoPublisher) && !errors.Is(err, whep.ErrNoPeer) {
			r.log.Debug("whep: the region's catalog did not answer", "room", room, "err", err)
		}
		return "", nil, own
	}
	tracks := make([]string, len(specs))
	for i, s := range specs {
		tracks[i] = s.Track
	}
	r.remember(room, tracks, time.Now())
	return publisher, specs, nil
}

// remember notes that the edge serves tracks of room from the region, played at now.
func (r *regionCatalog) remember(room string, tracks []string, now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := r.played[room]
	if m == nil {
		m = map[string]time.Time{}
		r.played[room] = m
	}
	for _, t := range tracks {
		m[t] = now
	}
}

// playing takes what the edge's viewers play now (room -> tracks, from the recheck's round):
// those tracks are played at now; the region's tracks nobody has played for forgetAfter are
// forgotten.
func (r *regionCatalog) playing(played map[string][]string, now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for room, m := range r.played {
		for t, last := range m {
			switch {
			case slices.Contains(played[room], t):
				m[t] = now
			case now.Sub(last) > forgetAfter:
				delete(m, t)
			}
		}
		if len(m) == 0 {
			delete(r.played, room)
		}
	}
}

// remembered reports whether the edge serves track of room from the region.
func (r *regionCatalog) remembered(room, track string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.played[room][track]
	return ok
}

// gone takes the tracks the edge's own bucket no longer holds (ownGone) and returns those
// that are gone: the edge's own tracks as they are, the region's tracks only once the region's
// bucket no longer holds them either (unwatched: not followed by the edge's own track-ends
// watch but by its watch of the region's bucket over the link, which may be down or just
// healed, so the recheck may be first to find them).
func (r *regionCatalog) gone(ctx context.Context, room string, ownGone []string) []whep.GoneTrack {
	var local, remote []string
	for _, t := range ownGone {
		if r.remembered(room, t) {
			remote = append(remote, t)
		} else {
			local = append(local, t)
		}
	}
	out := watchedGone(local)
	if len(remote) == 0 {
		return out
	}
	gone, err := r.goneInRegion(ctx, room, remote)
	if err != nil {
		r.log.Debug("whep: the region's tracks not rechecked", "room", room, "err", err)
		return out
	}
	r.mu.Lock()
	for _, t := range gone {
		delete(r.played[room], t)
	}
	if len(r.played[room]) == 0 {
		delete(r.played, room)
	}
	r.mu.Unlock()
	for _, t := range gone {
		out = append(out, whep.GoneTrack{Track: t, Unwatched: true})
	}
	return out
}

// publishedInRegion reads the room from the region's bucket as it is, without waiting for it
// to fold the room's newest event (the catalog's LoadRoomCurrent): that wait reads the newest
// event from the region's log with a direct get (of ev.<room>.>), which gets no answer over
// the edge's link when the log lives across a gateway (regionCatalog). A publisher that left a
// moment ago may still be chosen then, as on a node whose log cannot be looked up.
func (r *regionCatalog) publishedInRegion(ctx context.Context, room, peer string) (string, []whep.TrackSpec, error) {
	kv, err := r.bucket(ctx)
	if err != nil {
		return "", nil, err
	}
	rm, err := projections.LoadRoom(ctx, kv, room)
	if err != nil {
		return "", nil, err
	}
	return publishedIn(rm, peer)
}

// goneInRegion returns the tracks (each one the region's bucket held when the edge chose it)
// the region's bucket no longer holds. No wait for the bucket to catch up with the log is
// needed here: a track is only ever deleted from it, never put back. The room is read with a
// watch, as publishedInRegion reads it: a key read is a direct get too.
func (r *regionCatalog) goneInRegion(ctx context.Context, room string, tracks []string) ([]string, error) {
	kv, err := r.bucket(ctx)
	if err != nil {
		return nil, err
	}
	rm, err := projections.LoadRoom(ctx, kv, room)
	if err != nil {
		return nil, err
	}
	return slices.DeleteFunc(slices.Clone(tracks), func(t string) bool { _, held := rm.Tracks[t]; return held }), nil
}
