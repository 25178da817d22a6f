package projections_test

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/events"
	"github.com/jetmedia/jetmedia/pipeline/eventlog"
	"github.com/jetmedia/jetmedia/projections"
)

// snapshotKeys lists the bucket's keys of a room (heads and parts), sorted.
func snapshotKeys(t testing.TB, kv jetstream.KeyValue, room string) []string {
	t.Helper()
	lister, err := kv.ListKeysFiltered(t.Context(), room+".>")
	require.NoError(t, err)
	defer func() { _ = lister.Stop() }()
	var out []string
	for k := range lister.Keys() {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// seqs is the sequences of snaps.
func seqs(snaps []projections.RoomSnapshot) []uint64 {
	out := make([]uint64, len(snaps))
	for i, s := range snaps {
		out[i] = s.Seq
	}
	return out
}

// TestSnapshotPruneKeepsNewest: writing snapshots prunes a room to the newest K; two stores
// pruning the same room at once leave exactly the newest K; when the newest ones fail their
// checks, the newest valid one survives both stores' pruning and is what a cold node gets.
func TestSnapshotPruneKeepsNewest(t *testing.T) {
	env := start(t)
	ctx := t.Context()
	logs := appendRooms(t, env, 1, 400)
	log := logs["room0"]
	var logged syncBuffer
	logger := slog.New(slog.NewTextHandler(&logged, nil))

	// Written with keep 3: three are left, the newest.
	kept, err := projections.OpenSnapshotStore(ctx, env.js, logger, projections.SnapshotKeep(3))
	require.NoError(t, err)
	n, err := kept.WriteSnapshots(ctx, "room0", 30, true)
	require.NoError(t, err)
	require.Greater(t, n, 10)
	three, err := kept.List(ctx, "room0")
	require.NoError(t, err)
	require.Len(t, three, 3)
	require.Equal(t, log[len(log)-1].Seq, three[2].Seq, "the one at the head is kept")
	_, err = projections.OpenSnapshotStore(ctx, env.js, nil, projections.SnapshotKeep(0))
	require.Error(t, err, "keep 0 is refused")

	kv, err := env.js.KeyValue(ctx, eventlog.BucketSnapshots)
	require.NoError(t, err)
	for round := range 3 {
		// Many snapshots (a store that keeps them all), then two stores prune at once.
		all, err := projections.OpenSnapshotStore(ctx, env.js, nil, projections.SnapshotKeep(1000))
		require.NoError(t, err)
		more := appendRooms(t, env, 1, 200)["room0"]
		_, err = all.WriteSnapshots(ctx, "room0", 7, true)
		require.NoError(t, err)
		before, err := all.List(ctx, "room0")
		require.NoError(t, err)
		require.Greater(t, len(before), 20)
		want, err := projections.FoldAll("room0", more)
		require.NoError(t, err)

		newestValid := before[len(before)-1]
		if round > 0 {
			// The two newest edited (digest left): invalid, though newest.
			for _, s := range before[len(before)-2:] {
				key := projections.SnapshotKey(s.Room, s.Seq, s.MaxTime)
				e, err := kv.Get(ctx, key)
				require.NoError(t, err)
				_, err = kv.Put(ctx, key, []byte(strings.Replace(string(e.Value()), `"seq":`, `"seq": `, 1)))
				require.NoError(t, err)
			}
			newestValid = before[len(before)-3]
		}
		keep := 2
		var wg sync.WaitGroup
		errs := make([]error, 2)
		for i := range 2 {
			s, err := projections.OpenSnapshotStore(ctx, env.js, logger, projections.SnapshotKeep(keep))
			require.NoError(t, err)
			wg.Go(func() { _, errs[i] = s.Prune(ctx, "room0") })
		}
		wg.Wait()
		require.NoError(t, errs[0])
		require.NoError(t, errs[1])
		left := snapshotKeys(t, kv, "room0")
		wantKeys := []string{}
		for _, s := range before[len(before)-keep:] {
			wantKeys = append(wantKeys, projections.SnapshotKey(s.Room, s.Seq, s.MaxTime))
		}
		if round > 0 {
			wantKeys = append(wantKeys, projections.SnapshotKey(newestValid.Room, newestValid.Seq, newestValid.MaxTime))
		}
		slices.Sort(wantKeys)
		require.Equal(t, wantKeys, left, "round %d", round)

		cold, ok, err := all.Nearest(ctx, "room0", time.Time{})
		require.NoError(t, err)
		require.True(t, ok, "round %d: a valid snapshot is left", round)
		require.Equal(t, newestValid.Seq, cold.Seq, "round %d", round)
		got, _, err := projections.StateAtFrom(ctx, env.js, all, "room0", time.Time{}, nil)
		require.NoError(t, err)
		require.Equal(t, entries(t, want), entries(t, got), "round %d", round)
		if round > 0 {
			// Drop the edited ones before the next round writes past them.
			for _, s := range before[len(before)-2:] {
				require.NoError(t, kv.Purge(ctx, projections.SnapshotKey(s.Room, s.Seq, s.MaxTime)))
			}
		}
	}
}

// largeRoom is state with viewers enough that its sealed snapshot is over 1 MiB gzipped: each
// viewer's user agent is random, so that gzip cannot shrink it away.
func largeRoom(t testing.TB, state projections.Room, viewers int) projections.Room {
	t.Helper()
	r := state.Clone()
	at := r.LastEvent
	ua := make([]byte, 48)
	for i := range viewers {
		_, _ = rand.Read(ua)
		p := fmt.Sprintf("viewer-%06d", i)
		r.Peers[p] = projections.Peer{Peer: p, Transport: "whep", Role: "subscriber", Node: "node-a",
			RemoteAddr: fmt.Sprintf("10.%d.%d.%d:5000", i>>16, (i>>8)&255, i&255), UserAgent: hex.EncodeToString(ua), JoinedAt: at}
	}
	return r
}

// headOf is the hash of the event the log stores at seq.
func headOf(t testing.TB, js jetstream.JetStream, seq uint64) string {
	t.Helper()
	stream, err := js.Stream(t.Context(), eventlog.StreamEvents)
	require.NoError(t, err)
	msg, err := stream.GetMsg(t.Context(), seq)
	require.NoError(t, err)
	return events.Hash(msg.Data)
}

// TestSnapshotInParts: a room whose sealed snapshot is over 1 MiB gzipped is stored in parts
// (a head and part keys) and reads back equal; a replay (StateAtFrom) starts from it and
// folds the tail; a part deleted or edited makes the snapshot rejected with a warning naming
// the part, and the fold falls back to the older snapshot; pruning deletes the parts with
// their head; a head declaring parts over the 256 MiB cap is refused before anything is read.
func TestSnapshotInParts(t *testing.T) {
	env := start(t)
	ctx := t.Context()
	var logged syncBuffer
	store, err := projections.OpenSnapshotStore(ctx, env.js, slog.New(slog.NewTextHandler(&logged, nil)), projections.SnapshotKeep(10))
	require.NoError(t, err)
	kv, err := env.js.KeyValue(ctx, eventlog.BucketSnapshots)
	require.NoError(t, err)
	first := appendRooms(t, env, 1, 60)["room0"]
	_, err = store.WriteSnapshots(ctx, "room0", 1000, true) // an older, small snapshot
	require.NoError(t, err)
	older, ok, err := store.Nearest(ctx, "room0", time.Time{})
	require.NoError(t, err)
	require.True(t, ok)
	log := append(first, appendRooms(t, env, 1, 60)["room0"][len(first):]...)

	k := len(log) - 20 // the large snapshot covers log[:k]
	state, err := projections.FoldAll("room0", log[:k])
	require.NoError(t, err)
	big := largeRoom(t, state, 40_000)
	snap, err := projections.NewRoomSnapshot(big, headOf(t, env.js, log[k-1].Seq), maxTime(log[:k]))
	require.NoError(t, err)
	require.NoError(t, store.Put(ctx, snap))
	key := projections.SnapshotKey(snap.Room, snap.Seq, snap.MaxTime)
	var parts []string
	size := 0
	for _, k := range snapshotKeys(t, kv, "room0") {
		if strings.HasPrefix(k, key+".p") {
			parts = append(parts, k)
			e, err := kv.Get(ctx, k)
			require.NoError(t, err)
			size += len(e.Value())
		}
	}
	t.Logf("%d viewers: %d parts, %d bytes gzipped", len(big.Peers), len(parts), size)
	require.Greater(t, size, 1<<20, "over 1 MiB gzipped")
	require.GreaterOrEqual(t, len(parts), 2)
	require.NoError(t, store.Put(ctx, snap), "a second writer of the same snapshot")

	got, ok, err := store.Nearest(ctx, "room0", time.Time{})
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, snap.Seq, got.Seq)
	require.Equal(t, entries(t, big), entries(t, got.State))
	require.NoError(t, store.CheckHead(ctx, got))

	// Replay from it: the large state plus the tail.
	want := big
	for _, e := range log[k:] {
		want, err = projections.Fold(want, e)
		require.NoError(t, err)
	}
	var tail int
	r, from, err := projections.StateAtFrom(ctx, env.js, store, "room0", time.Time{}, func(events.Envelope) error { tail++; return nil })
	require.NoError(t, err)
	require.Equal(t, snap.Seq, from)
	require.Equal(t, len(log)-k, tail)
	require.Equal(t, entries(t, want), entries(t, r))

	// A part deleted, then a part edited: rejected, the fold starts from the older snapshot.
	plain, err := projections.FoldAll("room0", log)
	require.NoError(t, err)
	e1, err := kv.Get(ctx, parts[1])
	require.NoError(t, err)
	edited := slices.Clone(e1.Value())
	edited[len(edited)/2] ^= 0x01
	for name, tamper := range map[string]func() error{
		"deleted": func() error { return kv.Purge(ctx, parts[1]) },
		"edited":  func() error { _, err := kv.Put(ctx, parts[1], edited); return err },
	} {
		require.NoError(t, tamper(), name)
		r, from, err := projections.StateAtFrom(ctx, env.js, store, "room0", time.Time{}, nil)
		require.NoError(t, err, name)
		require.Equal(t, older.Seq, from, name)
		require.Equal(t, entries(t, plain), entries(t, r), name)
		require.Contains(t, logged.String(), "snapshot rejected", name)
		require.Contains(t, logged.String(), parts[1], name)
	}

	// The part restored, the large snapshot is valid again and the newest: pruned to one, it
	// and its parts are what is left.
	one, err := projections.OpenSnapshotStore(ctx, env.js, nil, projections.SnapshotKeep(1))
	require.NoError(t, err)
	_, err = kv.Put(ctx, parts[1], e1.Value())
	require.NoError(t, err)
	_, err = one.Prune(ctx, "room0")
	require.NoError(t, err)
	require.Equal(t, append([]string{key}, parts...), snapshotKeys(t, kv, "room0"))
	// Its head edited: a snapshot written from the log (the edited one rejected) replaces it,
	// and pruning to one deletes the edited head with its parts.
	_, err = kv.Put(ctx, key, []byte(`{"digest":"x"}`))
	require.NoError(t, err)
	n, err := store.WriteSnapshots(ctx, "room0", 1000, true)
	require.NoError(t, err)
	require.Equal(t, 1, n)
	_, err = one.Prune(ctx, "room0")
	require.NoError(t, err)
	left := snapshotKeys(t, kv, "room0")
	require.Len(t, left, 1, "the rewritten snapshot only: %v", left)

	// A head whose parts add up to more than the cap.
	huge := fmt.Sprintf(`{"digest":"%s","parts":[{"size":%d,"digest":"a"},{"size":%d,"digest":"b"}]}`,
		strings.Repeat("0", 64), 200<<20, 200<<20)
	_, err = kv.Put(ctx, projections.SnapshotKey("room0", log[len(log)-1].Seq+1000, time.Time{}), []byte(huge))
	require.NoError(t, err)
	_, ok, err = store.Nearest(ctx, "room0", time.Time{})
	require.NoError(t, err)
	require.True(t, ok)
	require.Contains(t, logged.String(), "more than a snapshot may hold")
}

// TestSnapshotBehindLogRetention: the log's retention drops the room's early events. A
// snapshot whose event is gone but whose room's first retained event chains onto its head is
// still used (it is the only way to the room's state: the retained tail alone is not it), and
// replays from it are right; an older one, whose following events are gone too, is rejected
// and pruned while the newer stays.
func TestSnapshotBehindLogRetention(t *testing.T) {
	env := start(t)
	ctx := t.Context()
	var logged syncBuffer
	store, err := projections.OpenSnapshotStore(ctx, env.js, slog.New(slog.NewTextHandler(&logged, nil)), projections.SnapshotKeep(10))
	require.NoError(t, err)
	log := appendRooms(t, env, 1, 240)["room0"]
	_, err = store.WriteSnapshots(ctx, "room0", 60, false)
	require.NoError(t, err)
	snaps, err := store.List(ctx, "room0")
	require.NoError(t, err)
	require.GreaterOrEqual(t, len(snaps), 3)
	s1, s2 := snaps[0], snaps[1]
	whole, err := projections.FoldAll("room0", log)
	require.NoError(t, err)

	// Keep only the events after s2.
	stream, err := env.js.Stream(ctx, eventlog.StreamEvents)
	require.NoError(t, err)
	cfg := stream.CachedInfo().Config
	last := log[len(log)-1].Seq
	cfg.MaxMsgs = int64(last - s2.Seq)
	_, err = env.js.UpdateStream(ctx, cfg)
	require.NoError(t, err)
	info, err := stream.Info(ctx)
	require.NoError(t, err)
	require.Equal(t, s2.Seq+1, info.State.FirstSeq)

	require.NoError(t, store.CheckHead(ctx, s2), "the next event chains onto it")
	require.ErrorIs(t, store.CheckHead(ctx, s1), projections.ErrSnapshotInvalid)
	at := s2.MaxTime.Add(time.Millisecond)
	got, from, err := projections.StateAtFrom(ctx, env.js, store, "room0", at, nil)
	require.NoError(t, err)
	require.Equal(t, s2.Seq, from)
	want, err := projections.FoldUntil("room0", log, at)
	require.NoError(t, err)
	require.Equal(t, entries(t, want), entries(t, got))
	got, _, err = projections.StateAtFrom(ctx, env.js, store, "room0", time.Time{}, nil)
	require.NoError(t, err)
	require.Equal(t, entries(t, whole), entries(t, got))

	n, err := store.Prune(ctx, "room0")
	require.NoError(t, err)
	require.Equal(t, 1, n, "s1 only")
	left, err := store.List(ctx, "room0")
	require.NoError(t, err)
	require.Equal(t, seqs(snaps[1:]), seqs(left))
}

// TestKVRunnerPrunesSnapshots: the rooms projection prunes each room's snapshots to the
// store's keep after each one it stores, and what it keeps verifies against the log.
func TestKVRunnerPrunesSnapshots(t *testing.T) {
	env := start(t)
	ctx := t.Context()
	store, err := projections.OpenSnapshotStore(ctx, env.js, nil, projections.SnapshotKeep(2))
	require.NoError(t, err)
	logs := appendRooms(t, env, 2, 400)
	runner := projections.NewKVRunner(env.kv, nil)
	runner.UseSnapshots(store, 20, nil)
	stop := runBatchConsumer(t, env, runner, eventlog.BatchConsumerConfig{Durable: "pruned", Filter: eventlog.EventsSubjects, Batch: 16})
	require.Eventually(t, func() bool {
		lag, err := projectionLag(ctx, env.js, "pruned")
		return err == nil && lag == 0
	}, 30*time.Second, 20*time.Millisecond)
	stop()
	for room, log := range logs {
		require.Greater(t, len(log), 100, room)
		all, err := store.List(ctx, room)
		require.NoError(t, err)
		require.Len(t, all, 2, "%s: %v", room, seqs(all))
		for _, s := range all {
			require.NoError(t, projections.VerifySnapshot(ctx, env.js, s), "%s at %d", room, s.Seq)
		}
	}
}

// FuzzDecodeSnapshot: any bytes as a stored snapshot value decode or are refused with
// ErrSnapshotInvalid, never a panic, and a decoded one encodes and decodes to itself.
func FuzzDecodeSnapshot(f *testing.F) {
	r := projections.NewRoom("r")
	r.LastSeq, r.CreatedAt, r.LastEvent = 7, t0, t0
	r.Peers["p"] = projections.Peer{Peer: "p", Transport: "whip", Role: "publisher", JoinedAt: t0}
	snap, err := projections.NewRoomSnapshot(r, "h", t0)
	require.NoError(f, err)
	small, err := snap.Encode()
	require.NoError(f, err)
	f.Add(small)
	big := largeRoom(f, r, 2000)
	snap, err = projections.NewRoomSnapshot(big, "h", t0)
	require.NoError(f, err)
	zipped, err := snap.Encode()
	require.NoError(f, err)
	f.Add(zipped)
	f.Add([]byte(`{"digest":"00","parts":[{"size":10,"digest":"aa"}]}`))
	f.Add([]byte(`{"digest":"00","zipped":"H4sIAAAAAAAA/w=="}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := projections.DecodeSnapshot(b)
		if err != nil {
			require.ErrorIs(t, err, projections.ErrSnapshotInvalid)
			return
		}
		again, err := s.Encode()
		require.NoError(t, err)
		back, err := projections.DecodeSnapshot(again)
		require.NoError(t, err)
		require.Equal(t, entries(t, s.State), entries(t, back.State))
	})
}
