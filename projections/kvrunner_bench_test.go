package projections_test

import (
	"context"
	"fmt"
	"os"
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
// eventlog.BatchConsumer → KVRunner.HandleBatch → bucket) catching up with a log of n events across rooms, on a
// real embedded server: each iteration folds the whole log into a fresh bucket from a fresh
// consumer.
func BenchmarkKVRunner(b *testing.B) {
	for _, rooms := range []int{1, 64} {
		b.Run(fmt.Sprint("rooms=", rooms), func(b *testing.B) { benchKVRunner(b, 10_000, rooms) })
	}
}

func benchKVRunner(b *testing.B, n, rooms int) {
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
		stop := runNodeProjection(b, e, kv, durable)
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

// runProjection runs a KVRunner into kv from the consumer cfg; stop ends it and waits.
func runProjection(tb testing.TB, e env, kv jetstream.KeyValue, cfg eventlog.EventSubscriberConfig) (stop func()) {
	tb.Helper()
	nc, err := e.srv.Connect("projection")
	require.NoError(tb, err)
	sub, err := eventlog.NewEventSubscriber(nc, cfg)
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

// runNodeProjection runs a KVRunner into kv as the node runs it: a BatchConsumer of durable
// handing batches to HandleBatch. stop ends it and waits.
func runNodeProjection(tb testing.TB, e env, kv jetstream.KeyValue, durable string) (stop func()) {
	tb.Helper()
	runner := projections.NewKVRunner(kv, nil)
	if os.Getenv("JETMEDIA_BENCH_NO_LOG_CHECK") != "1" { // the cost of the check, for comparison
		runner.UseLog(e.js)
	}
	return runBatchConsumer(tb, e, runner, eventlog.BatchConsumerConfig{Durable: durable, Filter: eventlog.EventsSubjects, Batch: projections.KVBatch})
}

// runBatchConsumer runs a BatchConsumer with cfg handing batches to runner; stop ends it and
// waits.
func runBatchConsumer(tb testing.TB, e env, runner *projections.KVRunner, cfg eventlog.BatchConsumerConfig) (stop func()) {
	tb.Helper()
	nc, err := e.srv.Connect("projection")
	require.NoError(tb, err)
	js, err := jetstream.New(nc)
	require.NoError(tb, err)
	c, err := eventlog.NewBatchConsumer(js, cfg)
	require.NoError(tb, err)
	require.NoError(tb, c.Declare(context.Background())) // its lag is read at once
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx, runner.HandleBatch) }()
	return func() {
		cancel()
		require.NoError(tb, <-done)
		nc.Close()
	}
}
