package projections_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/pipeline/eventlog"
	"github.com/jetmedia/jetmedia/projections"
)

// BenchmarkSnapshotLarge: storing and loading a snapshot of a room of 40,000 viewers (~2.5 MB
// gzipped, 4 parts) in a real embedded JetStream: Seal is the encoding alone (JSON and gzip),
// Put the encoding plus the writes of its parts and head, Load SnapshotStore.Nearest (the
// reads of the head and parts, the digests, gunzip, JSON, and the head's check against the log).
func BenchmarkSnapshotLarge(b *testing.B) {
	env := start(b)
	ctx := b.Context()
	store, err := projections.OpenSnapshotStore(ctx, env.js, nil)
	require.NoError(b, err)
	log := appendRooms(b, env, 1, 30)["room0"]
	state, err := projections.FoldAll("room0", log)
	require.NoError(b, err)
	snap, err := projections.NewRoomSnapshot(largeRoom(b, state, 40_000), headOf(b, env.js, log[len(log)-1].Seq), maxTime(log))
	require.NoError(b, err)
	sealed, err := snap.Encode()
	require.NoError(b, err)
	b.Logf("sealed: %d bytes", len(sealed))
	kv, err := env.js.KeyValue(ctx, eventlog.BucketSnapshots)
	require.NoError(b, err)

	b.Run("Seal", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_, err := snap.Encode()
			require.NoError(b, err)
		}
	})
	b.Run("Put", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			s := snap
			s.MaxTime = snap.MaxTime.Add(time.Duration(i+1) * time.Nanosecond) // a key of its own
			require.NoError(b, store.Put(ctx, s))
			b.StopTimer()
			for _, k := range snapshotKeys(b, kv, "room0") {
				require.NoError(b, kv.Purge(ctx, k))
			}
			b.StartTimer()
		}
	})
	require.NoError(b, store.Put(ctx, snap))
	b.Run("Load", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			got, ok, err := store.Nearest(ctx, "room0", time.Time{})
			require.NoError(b, err)
			require.True(b, ok)
			require.Equal(b, snap.Seq, got.Seq)
		}
	})
}
