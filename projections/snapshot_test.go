package projections_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/events"
	"github.com/jetmedia/jetmedia/pipeline/eventlog"
	"github.com/jetmedia/jetmedia/projections"
	"github.com/jetmedia/jetmedia/tests/loggen"
)

// maxTime is the latest time of evs.
func maxTime(evs []events.Envelope) time.Time {
	var m time.Time
	for _, e := range evs {
		if e.Time.After(m) {
			m = e.Time
		}
	}
	return m
}

// TestSnapshotPlusTailProperty: for random logs (redeliveries, unknown types) and random
// snapshot points, the snapshot taken there, sealed and read back, plus the fold of the rest
// equals the fold of the whole log; and for any instant at or after the snapshot's latest
// event, snapshot plus the tail up to T equals the fold up to T.
func TestSnapshotPlusTailProperty(t *testing.T) {
	for seed := range uint64(100) {
		rng := rand.New(rand.NewPCG(seed, 0x736e6170))
		log := randomLog(t, rng, 1+rng.IntN(150))
		k := 1 + rng.IntN(len(log)) // the snapshot covers log[:k]
		head, err := projections.FoldAll("r", log[:k])
		require.NoError(t, err)
		snap, err := projections.NewRoomSnapshot(head, "h", maxTime(log[:k]))
		require.NoError(t, err)
		b, err := snap.Encode()
		require.NoError(t, err)
		back, err := projections.DecodeSnapshot(b)
		require.NoError(t, err, "seed %d", seed)

		r := back.State
		for _, e := range log[k:] {
			r, err = projections.Fold(r, e)
			require.NoError(t, err)
		}
		whole, err := projections.FoldAll("r", log)
		require.NoError(t, err)
		require.Equal(t, entries(t, whole), entries(t, r), "seed %d, snapshot after %d of %d events", seed, k, len(log))

		for _, at := range instants(rng, log) {
			if at.Before(back.MaxTime) {
				continue // the snapshot is not the state at that instant
			}
			r := back.State
			for _, e := range log[k:] {
				if e.Time.After(at) {
					break
				}
				r, err = projections.Fold(r, e)
				require.NoError(t, err)
			}
			want, err := projections.FoldUntil("r", log, at)
			require.NoError(t, err)
			require.Equal(t, entries(t, want), entries(t, r), "seed %d at %s", seed, at)
		}
	}
}

// TestSnapshotTamperedDoesNotDecode: a changed byte anywhere in a sealed snapshot's body, or
// a body re-sealed while contradicting itself, is refused.
func TestSnapshotTamperedDoesNotDecode(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 3))
	log := randomLog(t, rng, 80)
	r, err := projections.FoldAll("r", log)
	require.NoError(t, err)
	snap, err := projections.NewRoomSnapshot(r, "h", maxTime(log))
	require.NoError(t, err)
	b, err := snap.Encode()
	require.NoError(t, err)
	var sealed struct {
		Digest string          `json:"digest"`
		Body   json.RawMessage `json:"body"`
	}
	require.NoError(t, json.Unmarshal(b, &sealed))
	for range 200 {
		body := bytes.Clone(sealed.Body)
		i := rng.IntN(len(body))
		body[i] ^= byte(1 + rng.IntN(255))
		raw := append(append([]byte(`{"digest":"`+sealed.Digest+`","body":`), body...), '}')
		_, err := projections.DecodeSnapshot(raw)
		require.ErrorIs(t, err, projections.ErrSnapshotInvalid, "byte %d changed", i)
	}
	// A state of another room, re-sealed: its digest holds, the snapshot contradicts itself.
	other := snap
	other.State.Room = "elsewhere"
	b, err = other.Encode()
	require.NoError(t, err)
	_, err = projections.DecodeSnapshot(b)
	require.ErrorIs(t, err, projections.ErrSnapshotInvalid)
	_, err = projections.NewRoomSnapshot(projections.NewRoom("r"), "h", time.Time{})
	require.ErrorIs(t, err, projections.ErrSnapshotInvalid, "a room with no event has no snapshot")
}

// syncBuffer is a log sink the store's goroutine-free calls write into.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestStateAtFromSnapshotsProperty: random rooms written through the Appender, interleaved,
// snapshots stored every few events; at any instant the state from the nearest snapshot plus
// the tail equals the fold of the room's events up to T, the timeline is the tail's events,
// and every stored snapshot verifies against the log the long way.
func TestStateAtFromSnapshotsProperty(t *testing.T) {
	env := start(t)
	ctx := t.Context()
	store, err := projections.OpenSnapshotStore(ctx, env.js, nil, keepAll)
	require.NoError(t, err)
	logs := appendRooms(t, env, 4, 500)
	rng := rand.New(rand.NewPCG(11, 11))
	for room, log := range logs {
		every := 3 + rng.IntN(20)
		n, err := store.WriteSnapshots(ctx, room, every, rng.IntN(2) == 0)
		require.NoError(t, err)
		require.GreaterOrEqual(t, n, len(log)/every)
		// Again: nothing new to write (at most one at the head).
		again, err := store.WriteSnapshots(ctx, room, every, false)
		require.NoError(t, err)
		require.Zero(t, again)
		snaps, err := store.List(ctx, room)
		require.NoError(t, err)
		require.Len(t, snaps, n)
		for _, s := range snaps {
			require.NoError(t, projections.VerifySnapshot(ctx, env.js, s))
			require.NoError(t, store.CheckHead(ctx, s))
		}
		for _, at := range append(instants(rng, log), time.Time{}) {
			var timeline []string
			got, from, err := projections.StateAtFrom(ctx, env.js, store, room, at, func(e events.Envelope) error {
				timeline = append(timeline, e.ID)
				return nil
			})
			require.NoError(t, err)
			before := upTo(log, at)
			if at.IsZero() {
				before = log
			}
			want, err := projections.FoldAll(room, before)
			require.NoError(t, err)
			require.Equal(t, entries(t, want), entries(t, got), "%s at %s from snapshot %d", room, at, from)
			var ids []string
			for _, e := range before {
				if e.Seq > from {
					ids = append(ids, e.ID)
				}
			}
			require.Equal(t, ids, timeline, "%s at %s from %d", room, at, from)
		}
	}
}

// appendRooms writes n events of rooms random rooms through the Appender (chained) and returns
// each room's log as read back.
func appendRooms(t testing.TB, env env, rooms, n int) map[string][]events.Envelope {
	ctx := t.Context()
	a := eventlog.NewAppender(env.js, "n1")
	rng := rand.New(rand.NewPCG(uint64(rooms), uint64(n)))
	gens := make([]*loggen.Gen, rooms)
	for i := range gens {
		gens[i] = loggen.New(fmt.Sprintf("room%d", i), uint64(i), t0, time.Duration(1+i)*time.Second)
	}
	for range n {
		e := gens[rng.IntN(rooms)].Next()
		if e.Type == events.TypeRoomCreated {
			continue // the Appender adds it
		}
		_, err := a.Append(ctx, e)
		require.NoError(t, err)
	}
	out := map[string][]events.Envelope{}
	for i := range rooms {
		room := fmt.Sprintf("room%d", i)
		require.NoError(t, eventlog.Read(ctx, env.js, eventlog.ReadOptions{Filter: eventlog.RoomEventsFilter(room)},
			func(e events.Envelope) error { out[room] = append(out[room], e); return nil }))
	}
	return out
}

// TestSnapshotTamperedInStoreFallsBack: a snapshot edited in the bucket (its digest left, or
// recomputed, or another event's head) is rejected with a log line naming it, the state comes
// from an older snapshot or the whole log and is still right, and VerifySnapshot refuses the
// re-sealed edit the cheap checks cannot see.
func TestSnapshotTamperedInStoreFallsBack(t *testing.T) {
	env := start(t)
	ctx := t.Context()
	var logged syncBuffer
	store, err := projections.OpenSnapshotStore(ctx, env.js, slog.New(slog.NewTextHandler(&logged, nil)))
	require.NoError(t, err)
	logs := appendRooms(t, env, 1, 120)
	log := logs["room0"]
	n, err := store.WriteSnapshots(ctx, "room0", 1000, true) // one snapshot, at the head
	require.NoError(t, err)
	require.Equal(t, 1, n)
	snaps, err := store.List(ctx, "room0")
	require.NoError(t, err)
	snap := snaps[0]
	kv, err := env.js.KeyValue(ctx, eventlog.BucketSnapshots)
	require.NoError(t, err)
	key := projections.SnapshotKey(snap.Room, snap.Seq, snap.MaxTime)
	want, err := projections.FoldAll("room0", log)
	require.NoError(t, err)

	// Some peer that is in the room, dropped from the state.
	edited := snap
	edited.State = snap.State.Clone()
	peers := edited.State.PeerIDs()
	require.NotEmpty(t, peers)
	delete(edited.State.Peers, peers[0])
	resealed, err := edited.Encode()
	require.NoError(t, err)
	original, err := snap.Encode()
	require.NoError(t, err)
	otherHead := snap
	otherHead.Head = events.Hash([]byte("not the event"))
	wrongHead, err := otherHead.Encode()
	require.NoError(t, err)

	cases := map[string][]byte{
		"digest left":     bytes.Replace(original, []byte(peers[0]), []byte("zz"+peers[0][2:]), 1),
		"head of nothing": wrongHead,
	}
	for name, value := range cases {
		_, err := kv.Put(ctx, key, value)
		require.NoError(t, err)
		got, from, err := projections.StateAtFrom(ctx, env.js, store, "room0", time.Time{}, nil)
		require.NoError(t, err, name)
		require.Zero(t, from, "%s: the whole log is folded", name)
		require.Equal(t, entries(t, want), entries(t, got), name)
		require.Contains(t, logged.String(), "snapshot rejected", name)
		require.Contains(t, logged.String(), key, name)
	}
	// Re-sealed with a valid digest and the right head: only the long check sees it.
	_, err = kv.Put(ctx, key, resealed)
	require.NoError(t, err)
	back, ok, err := store.Nearest(ctx, "room0", time.Time{})
	require.NoError(t, err)
	require.True(t, ok)
	err = projections.VerifySnapshot(ctx, env.js, back)
	require.ErrorIs(t, err, projections.ErrSnapshotInvalid)
	require.True(t, strings.Contains(err.Error(), "differs"), err.Error())
	require.NoError(t, projections.VerifySnapshot(ctx, env.js, snap))
	require.True(t, slices.Equal(snap.State.PeerIDs(), want.PeerIDs()))
}

// TestKVRunnerStartsFromSnapshot: a cold projection (fresh bucket, fresh consumer) with
// snapshots starts a snapshotted room from its latest snapshot, ends with the same bucket as
// the whole log's fold, and stores the rooms' next snapshots itself (it knows their whole
// history), each of which verifies against the log. A second runner on the bucket it wrote
// (a restart, which does not know the rooms' latest event times) hands its counts to a
// Snapshotter, which writes the next ones from the log.
func TestKVRunnerStartsFromSnapshot(t *testing.T) {
	env := start(t)
	ctx := t.Context()
	var logged syncBuffer
	logger := slog.New(slog.NewTextHandler(&logged, nil))
	store, err := projections.OpenSnapshotStore(ctx, env.js, logger, keepAll)
	require.NoError(t, err)
	logs := appendRooms(t, env, 2, 400)
	_, err = store.WriteSnapshots(ctx, "room0", 40, false)
	require.NoError(t, err)
	seeded, err := store.List(ctx, "room0")
	require.NoError(t, err)

	var mu sync.Mutex
	folded := map[string]int{}
	count := func(room string, n int) {
		mu.Lock()
		defer mu.Unlock()
		folded[room] += n
	}
	runner := projections.NewKVRunner(env.kv, logger)
	runner.UseSnapshots(store, 25, count)
	stop := runBatchConsumer(t, env, runner, eventlog.BatchConsumerConfig{Durable: "cold", Filter: eventlog.EventsSubjects, Batch: 16})
	waitLag := func(durable string) {
		require.Eventually(t, func() bool {
			lag, err := projectionLag(ctx, env.js, durable)
			return err == nil && lag == 0
		}, 30*time.Second, 20*time.Millisecond)
	}
	waitLag("cold")
	stop()
	requireBucket := func() {
		for room, log := range logs {
			want, err := projections.FoldAll(room, log)
			require.NoError(t, err)
			got, err := projections.LoadRoom(ctx, env.kv, room)
			require.NoError(t, err)
			require.Equal(t, entries(t, want), entries(t, got), room)
		}
	}
	requireBucket()
	require.Contains(t, logged.String(), "room starts from its snapshot")
	mu.Lock()
	require.Empty(t, folded, "the runner snapshots the rooms it knows itself")
	mu.Unlock()
	for room, log := range logs {
		all, err := store.List(ctx, room)
		require.NoError(t, err)
		if room == "room0" {
			require.Greater(t, len(all), len(seeded), "room0 snapshotted after the seed")
		} else {
			require.GreaterOrEqual(t, len(all), len(log)/25-1, room)
		}
		for _, s := range all {
			require.NoError(t, projections.VerifySnapshot(ctx, env.js, s), "%s at %d", room, s.Seq)
		}
	}

	// A restarted runner (new process, same bucket): counts go to the Snapshotter.
	appendRooms(t, env, 2, 300)
	snapshotter := projections.NewSnapshotter(store, 25, logger)
	restarted := projections.NewKVRunner(env.kv, logger)
	restarted.UseSnapshots(store, 25, func(room string, n int) { count(room, n); snapshotter.Folded(room, n) })
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); snapshotter.Run(sctx) }()
	defer func() { cancel(); <-done }()
	stop = runBatchConsumer(t, env, restarted, eventlog.BatchConsumerConfig{Durable: "cold", Filter: eventlog.EventsSubjects, Batch: 16})
	waitLag("cold")
	stop()
	mu.Lock()
	require.NotEmpty(t, folded)
	mu.Unlock()
	require.Eventually(t, func() bool {
		s, ok, err := store.Nearest(ctx, "room1", time.Time{})
		head, herr := env.js.Stream(ctx, eventlog.StreamEvents)
		if err != nil || herr != nil || !ok {
			return false
		}
		last, err := head.GetLastMsgForSubject(ctx, eventlog.RoomEventsFilter("room1"))
		return err == nil && last.Sequence-s.Seq < 50
	}, 20*time.Second, 50*time.Millisecond, "the snapshotter caught up with room1")
}

// TestSeedFromSnapshots: a cold projection on an empty bucket gets every snapshotted room
// written from its snapshot and a start sequence past what the snapshots hold; started there,
// it ends with the whole log's fold, also for events appended after the seeding. On a bucket
// that is not empty it starts at the beginning.
func TestSeedFromSnapshots(t *testing.T) {
	env := start(t)
	ctx := t.Context()
	store, err := projections.OpenSnapshotStore(ctx, env.js, nil)
	require.NoError(t, err)
	logs := appendRooms(t, env, 3, 300)
	for _, room := range []string{"room0", "room1"} {
		_, err := store.WriteSnapshots(ctx, room, 1000, true) // one at the head
		require.NoError(t, err)
	}
	startSeq, err := projections.SeedFromSnapshots(ctx, env.js, env.kv, store)
	require.NoError(t, err)
	require.Equal(t, logs["room2"][0].Seq, startSeq, "room2 has no snapshot: from its first event")

	// All three at their heads: past the log's last event.
	fresh, err := env.js.CreateKeyValue(ctx, eventlog.RoomsBucketConfig("rooms-cold", eventlog.StorageConfig{}))
	require.NoError(t, err)
	_, err = store.WriteSnapshots(ctx, "room2", 1000, true)
	require.NoError(t, err)
	startSeq, err = projections.SeedFromSnapshots(ctx, env.js, fresh, store)
	require.NoError(t, err)
	last := uint64(0)
	for _, log := range logs {
		last = max(last, log[len(log)-1].Seq)
	}
	require.Equal(t, last+1, startSeq)
	for room, log := range logs {
		want, err := projections.FoldAll(room, log)
		require.NoError(t, err)
		got, err := projections.LoadRoom(ctx, fresh, room)
		require.NoError(t, err)
		require.Equal(t, entries(t, want), entries(t, got), room)
	}
	// The projection from there folds what comes next.
	more := appendRooms(t, env, 3, 100)
	stop := runBatchConsumer(t, env, projections.NewKVRunner(fresh, nil),
		eventlog.BatchConsumerConfig{Durable: "seeded", Filter: eventlog.EventsSubjects, Batch: 32, StartSeq: startSeq})
	require.Eventually(t, func() bool {
		lag, err := projectionLag(ctx, env.js, "seeded")
		return err == nil && lag == 0
	}, 30*time.Second, 20*time.Millisecond)
	stop()
	for room, log := range more {
		want, err := projections.FoldAll(room, log) // the whole room, read back after the appends
		require.NoError(t, err)
		got, err := projections.LoadRoom(ctx, fresh, room)
		require.NoError(t, err)
		require.Equal(t, entries(t, want), entries(t, got), room)
	}
	again, err := projections.SeedFromSnapshots(ctx, env.js, fresh, store)
	require.NoError(t, err)
	require.Equal(t, uint64(1), again, "a bucket that holds rooms is not cold")
}

// TestSnapshotOfALargeRoom: a webinar-sized room (5,000 viewers subscribed to 4 tracks) has a
// state of several MiB; its snapshot is stored gzipped under the bucket's 1 MiB message limit,
// reads back equal, and an edit of the compressed bytes is rejected.
func TestSnapshotOfALargeRoom(t *testing.T) {
	at := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	r := projections.NewRoom("webinar")
	r.LastSeq, r.CreatedAt, r.LastEvent, r.Node = 123_456, at, at, "node-a"
	tracks := []string{"t-cam", "t-mic", "t-screen", "t-screen-audio"}
	for _, tr := range tracks {
		r.Tracks[tr] = projections.Track{Track: tr, Peer: "host", Kind: "video", Codec: "video/VP8", PublishedAt: at}
	}
	for i := range 5000 {
		p := fmt.Sprintf("viewer-%06d", i)
		r.Peers[p] = projections.Peer{Peer: p, Transport: "whep", Role: "subscriber", Node: "node-a",
			RemoteAddr: fmt.Sprintf("10.0.%d.%d:5000", i/250, i%250), UserAgent: "Mozilla/5.0 (X11; Linux x86_64) Chrome/142", JoinedAt: at}
		for _, tr := range tracks {
			r.Subs[p+"."+tr] = projections.Subscription{Peer: p, Track: tr, Publisher: "host", Since: at}
		}
	}
	snap, err := projections.NewRoomSnapshot(r, "head", at)
	require.NoError(t, err)
	b, err := snap.Encode()
	require.NoError(t, err)
	plain, err := json.Marshal(r.Subs)
	require.NoError(t, err)
	t.Logf("sealed snapshot: %d bytes (the subscriptions alone are %d bytes of JSON)", len(b), len(plain))
	require.Less(t, len(b), 1<<20, "the snapshot fits the bucket's message limit")
	got, err := projections.DecodeSnapshot(b)
	require.NoError(t, err)
	require.Equal(t, snap.State.Subs, got.State.Subs)
	require.Equal(t, snap.State.Peers, got.State.Peers)
	require.Equal(t, snap.Seq, got.Seq)

	var sealed struct {
		Digest string `json:"digest"`
		Zipped []byte `json:"zipped"`
	}
	require.NoError(t, json.Unmarshal(b, &sealed))
	require.NotEmpty(t, sealed.Zipped, "stored compressed")
	for _, i := range []int{0, 10, len(sealed.Zipped) / 2, len(sealed.Zipped) - 5} {
		z := bytes.Clone(sealed.Zipped)
		z[i] ^= 0x55
		raw, err := json.Marshal(map[string]any{"digest": sealed.Digest, "zipped": z})
		require.NoError(t, err)
		_, err = projections.DecodeSnapshot(raw)
		require.ErrorIs(t, err, projections.ErrSnapshotInvalid, "compressed byte %d changed", i)
	}
}

// keepAll keeps every snapshot written, for the tests that count them (retention has its own).
var keepAll = projections.SnapshotKeep(1 << 30)

// TestRebuildFromSnapshots: a rebuild from the rooms' snapshots (one room snapshotted midway,
// one at its head, one without any) plus the events after them equals the whole-log rebuild,
// key for key, and folds only the tails.
func TestRebuildFromSnapshots(t *testing.T) {
	env := start(t)
	ctx := t.Context()
	store, err := projections.OpenSnapshotStore(ctx, env.js, nil)
	require.NoError(t, err)
	appendRooms(t, env, 3, 200)
	_, err = store.WriteSnapshots(ctx, "room0", 1000, true) // at its head
	require.NoError(t, err)
	_, err = store.WriteSnapshots(ctx, "room1", 1000, true)
	require.NoError(t, err)
	appendRooms(t, env, 3, 100) // room1's snapshot is now midway; room2 has none

	full, err := projections.Rebuild(ctx, env.js, "rooms-full", eventlog.StorageConfig{})
	require.NoError(t, err)
	folded, err := projections.RebuildFromSnapshots(ctx, env.js, "rooms-snap", eventlog.StorageConfig{}, store)
	require.NoError(t, err)
	require.Less(t, folded, full, "only the tails after the snapshots are folded")
	a, err := env.js.KeyValue(ctx, "rooms-full")
	require.NoError(t, err)
	b, err := env.js.KeyValue(ctx, "rooms-snap")
	require.NoError(t, err)
	want, err := projections.Snapshot(ctx, a)
	require.NoError(t, err)
	got, err := projections.Snapshot(ctx, b)
	require.NoError(t, err)
	require.Equal(t, want, got)
	_, err = projections.RebuildFromSnapshots(ctx, env.js, eventlog.BucketRooms, eventlog.StorageConfig{}, store)
	require.Error(t, err, "never into the live bucket")
}
