package projections_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/events"
	"github.com/jetmedia/jetmedia/pipeline/eventlog"
	"github.com/jetmedia/jetmedia/projections"
	"github.com/jetmedia/jetmedia/tests/loggen"
)

// interleaved returns a next func for loggen.Write that deals the events of rooms generated
// rooms round robin, as a live node's log mixes its rooms. The chain hashes are not per room
// (loggen chains one sequence), which the projection does not look at.
func interleaved(rooms int) func() events.Envelope {
	gens := make([]*loggen.Gen, rooms)
	for i := range gens {
		gens[i] = loggen.New(fmt.Sprintf("room%03d", i), uint64(i+1), t0, time.Millisecond)
	}
	i := 0
	return func() events.Envelope {
		e := gens[i%rooms].Next()
		i++
		return e
	}
}

// projectionLag is what the node's ProjectionLag reports for a consumer.
func projectionLag(ctx context.Context, js jetstream.JetStream, durable string) (uint64, error) {
	c, err := js.Consumer(ctx, eventlog.StreamEvents, durable)
	if err != nil {
		return 0, err
	}
	info, err := c.Info(ctx)
	if err != nil {
		return 0, err
	}
	return info.NumPending + uint64(info.NumAckPending), nil
}

// BenchmarkKVRunner measures the rooms projection as the node runs it (durable consumer →
// watermill router → KVRunner → bucket) catching up with a log of n events across rooms, on a
// real embedded server: each iteration folds the whole log into a fresh bucket from a fresh
// consumer.
func BenchmarkKVRunner(b *testing.B) {
	const n, rooms = 5_000, 32
	e := start(b)
	ctx := context.Background()
	require.NoError(b, loggen.Write(ctx, e.js, n, interleaved(rooms)))
	b.ReportAllocs()
	b.ResetTimer()
	i := 0
	for b.Loop() {
		i++
		b.StopTimer()
		bucket := fmt.Sprintf("bench%d", i)
		kv, err := e.js.CreateKeyValue(ctx, eventlog.RoomsBucketConfig(bucket, eventlog.StorageConfig{}))
		require.NoError(b, err)
		durable := fmt.Sprintf("bench%d", i)
		b.StartTimer()
		stop := runBatched(b, e, kv, durable, projections.KVAckBatch)
		for {
			lag, err := projectionLag(ctx, e.js, durable)
			require.NoError(b, err)
			if lag == 0 {
				break
			}
			time.Sleep(2 * time.Millisecond)
		}
		b.StopTimer()
		stop()
		require.NoError(b, e.js.DeleteKeyValue(ctx, bucket))
		require.NoError(b, e.js.DeleteConsumer(ctx, eventlog.StreamEvents, durable))
		b.StartTimer()
	}
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

// TestKVRunnerBatchingEqualsRebuild: the same log folded with different batch sizes, by two
// runners (two nodes, each with its own consumer) writing one bucket at once, and by a runner
// restarted half way, gives a bucket equal byte for byte to a rebuild.
func TestKVRunnerBatchingEqualsRebuild(t *testing.T) {
	const n, rooms = 3_000, 8
	e := start(t)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	require.NoError(t, loggen.Write(ctx, e.js, n, interleaved(rooms)))
	_, err := projections.Rebuild(ctx, e.js, "want", eventlog.StorageConfig{})
	require.NoError(t, err)
	wantKV, err := e.js.KeyValue(ctx, "want")
	require.NoError(t, err)
	want, err := projections.Snapshot(ctx, wantKV)
	require.NoError(t, err)

	caughtUp := func(durable string, below uint64) func() bool {
		return func() bool {
			lag, err := projectionLag(ctx, e.js, durable)
			return err == nil && lag <= below
		}
	}
	for _, batch := range []int{1, 7, projections.KVAckBatch} {
		t.Run(fmt.Sprint("batch=", batch), func(t *testing.T) {
			bucket := fmt.Sprint("live", batch)
			kv, err := e.js.CreateKeyValue(ctx, eventlog.RoomsBucketConfig(bucket, eventlog.StorageConfig{}))
			require.NoError(t, err)
			a, b := bucket+"-a", bucket+"-b"
			stopA := runBatched(t, e, kv, a, batch)
			stopB := runBatched(t, e, kv, b, batch)
			require.Eventually(t, caughtUp(a, n/2), time.Minute, time.Millisecond)
			stopA() // a restart of node a half way
			stopA = runBatched(t, e, kv, a, batch)
			require.Eventually(t, caughtUp(a, 0), time.Minute, 10*time.Millisecond)
			require.Eventually(t, caughtUp(b, 0), time.Minute, 10*time.Millisecond)
			stopA() // a clean restart resumes the recreated consumer
			stopA = runBatched(t, e, kv, a, batch)
			stopA()
			stopB()
			live, err := projections.Snapshot(ctx, kv)
			require.NoError(t, err)
			require.Equal(t, stringMap(want), stringMap(live))
		})
	}
}

// runBatched runs a KVRunner into kv from durable, acknowledging batches of up to batch
// events; stop ends it and waits.
func runBatched(tb testing.TB, e env, kv jetstream.KeyValue, durable string, batch int) (stop func()) {
	tb.Helper()
	nc, err := e.srv.Connect("projection")
	require.NoError(tb, err)
	sub, err := eventlog.NewEventSubscriber(nc, eventlog.EventSubscriberConfig{Durable: durable, Filter: eventlog.EventsSubjects,
		AckBatch: batch, MaxAckPending: 2 * batch, AckWait: 2 * time.Second})
	require.NoError(tb, err)
	router, err := eventlog.NewRouter(nil)
	require.NoError(tb, err)
	router.AddConsumerHandler("rooms", eventlog.EventsSubjects, sub, projections.NewKVRunner(kv, nil).Handle)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- router.Run(ctx) }()
	<-router.Running()
	return func() {
		cancel()
		require.NoError(tb, router.Close())
		require.NoError(tb, <-done)
		nc.Close()
	}
}
