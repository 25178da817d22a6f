package projections

import (
	"context"
	"log/slog"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/pipeline/eventlog"
	"github.com/jetmedia/jetmedia/pipeline/natsnode"
)

// A replaced track-ends watch starts after the last marker the old one saw: an end written
// while no watch ran is still told, and none is told twice. A run whose consumer is deleted
// under it (as when its server dies) reports itself broken, and so does one that saw a gap.
func TestTrackEndsWatchResumesAfterReplacement(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv, err := natsnode.StartServer(ctx, natsnode.ServerConfig{Name: "trackends", JetStream: true, StoreDir: t.TempDir()})
	require.NoError(t, err)
	defer srv.Shutdown()
	js, kv := declaredRooms(ctx, t, srv, "test")

	var mu sync.Mutex
	var told []string
	w := newTrackEndsWatch(js, eventlog.BucketRooms, func(room, track string) {
		mu.Lock()
		told = append(told, room+"/"+track)
		mu.Unlock()
	}, slog.New(slog.DiscardHandler))
	require.True(t, w.broken(), "no watch running")
	require.NoError(t, w.start(ctx))
	for _, k := range []string{"r.track.a", "r.track.b", "r.track.c", "r.peer.p"} {
		_, err := kv.Put(ctx, k, []byte("{}"))
		require.NoError(t, err)
	}
	require.NoError(t, kv.Delete(ctx, "r.track.a"))
	require.NoError(t, kv.Delete(ctx, "r.peer.p")) // not a track
	toldNow := func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), told...)
	}
	require.Eventually(t, func() bool { return len(toldNow()) == 1 }, 10*time.Second, 10*time.Millisecond)
	require.False(t, w.broken())
	w.stop()
	require.True(t, w.broken(), "no watch running")
	require.NoError(t, kv.Delete(ctx, "r.track.b")) // while none runs
	require.NoError(t, w.start(ctx))
	require.Eventually(t, func() bool { return len(toldNow()) == 2 }, 10*time.Second, 10*time.Millisecond)

	// Its consumer deleted under it: the run says it is broken (RunTrackEnds replaces it).
	require.NoError(t, js.DeleteConsumer(ctx, "KV_"+eventlog.BucketRooms, w.run.name))
	require.Eventually(t, w.broken, 10*time.Second, 10*time.Millisecond, "a run whose consumer is gone is broken")
	w.stop()
	require.NoError(t, kv.Delete(ctx, "r.track.c"))
	require.NoError(t, w.start(ctx))
	defer w.stop()
	require.Eventually(t, func() bool { return len(toldNow()) == 3 }, 10*time.Second, 10*time.Millisecond)
	time.Sleep(200 * time.Millisecond)
	require.Equal(t, []string{"r/a", "r/b", "r/c"}, toldNow(), "each end told once, in order")
	consumers := 0
	stream, err := js.Stream(ctx, "KV_"+eventlog.BucketRooms)
	require.NoError(t, err)
	for range stream.ListConsumers(ctx).Info() {
		consumers++
	}
	require.Equal(t, 1, consumers, "replaced runs' consumers are removed")

	// broken runs every second for the node's life: it must not start a goroutine per call.
	before := runtime.NumGoroutine()
	for range 100 {
		w.broken()
	}
	require.LessOrEqual(t, runtime.NumGoroutine(), before+2, "goroutines per check of the watch")
	// A gap in the consumer's delivery would lose what was skipped: the run is broken.
	w.run.dseq.Add(5)
	_, err = kv.Put(ctx, "r.track.d", []byte("{}"))
	require.NoError(t, err)
	require.Eventually(t, w.broken, 10*time.Second, 10*time.Millisecond, "a gap breaks the run")
}

// declaredRooms connects a client to srv (closed when the test ends), declares the log's
// streams and buckets there and returns its JetStream and the rooms bucket.
func declaredRooms(ctx context.Context, t *testing.T, srv *natsnode.Server, client string) (jetstream.JetStream, jetstream.KeyValue) {
	t.Helper()
	nc, err := srv.Connect(client)
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	require.NoError(t, eventlog.Declare(ctx, js, eventlog.StorageConfig{}))
	kv, err := js.KeyValue(ctx, eventlog.BucketRooms)
	require.NoError(t, err)
	return js, kv
}
