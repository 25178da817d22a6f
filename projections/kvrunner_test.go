package projections_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/pipeline/eventlog"
	"github.com/jetmedia/jetmedia/projections"
	"github.com/jetmedia/jetmedia/tests/loggen"
)

// TestKVRunnerBatchingEqualsRebuild: the same log folded with different batch sizes, by two
// runners (two nodes, each with its own consumer) writing one bucket at once, and by a runner
// restarted half way, gives a bucket equal byte for byte to a rebuild.
func TestKVRunnerBatchingEqualsRebuild(t *testing.T) {
	const n, rooms = 1_500, 8
	e := start(t)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute) // -race on a busy machine
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
	type run func(t *testing.T, kv jetstream.KeyValue, durable string, batch int) (stop func())
	paths := []struct {
		name string
		run  run
	}{
		{"subscriber", func(t *testing.T, kv jetstream.KeyValue, durable string, batch int) func() {
			return runBatched(t, e, kv, durable, batch)
		}},
		{"batches", func(t *testing.T, kv jetstream.KeyValue, durable string, batch int) func() {
			return runBatchConsumer(t, e, projections.NewKVRunner(kv, nil),
				eventlog.BatchConsumerConfig{Durable: durable, Filter: eventlog.EventsSubjects, Batch: batch, AckWait: 2 * time.Second})
		}},
	}
	for _, path := range paths {
		for _, batch := range []int{1, 7, projections.KVAckBatch} {
			if path.name == "subscriber" && batch == 1 {
				continue // the per-message path: the batches path with batch=1 covers it
			}
			t.Run(fmt.Sprint(path.name, "/batch=", batch), func(t *testing.T) {
				bucket := fmt.Sprint("live-", path.name, batch)
				kv, err := e.js.CreateKeyValue(ctx, eventlog.RoomsBucketConfig(bucket, eventlog.StorageConfig{}))
				require.NoError(t, err)
				a, b := bucket+"-a", bucket+"-b"
				stopA := path.run(t, kv, a, batch)
				stopB := path.run(t, kv, b, batch)
				require.Eventually(t, caughtUp(a, n/2), 3*time.Minute, time.Millisecond)
				stopA() // a restart of node a half way
				stopA = path.run(t, kv, a, batch)
				require.Eventually(t, caughtUp(a, 0), 3*time.Minute, 10*time.Millisecond)
				require.Eventually(t, caughtUp(b, 0), 3*time.Minute, 10*time.Millisecond)
				stopA() // a clean restart resumes the recreated consumer
				stopA = path.run(t, kv, a, batch)
				stopA()
				stopB()
				live, err := projections.Snapshot(ctx, kv)
				require.NoError(t, err)
				require.Equal(t, stringMap(want), stringMap(live))
			})
		}
	}
}

// runBatched runs a KVRunner into kv from durable, acknowledging batches of up to batch
// events; stop ends it and waits.
func runBatched(tb testing.TB, e env, kv jetstream.KeyValue, durable string, batch int) (stop func()) {
	return runProjection(tb, e, kv, eventlog.EventSubscriberConfig{Durable: durable, Filter: eventlog.EventsSubjects,
		AckBatch: batch, MaxAckPending: 2 * batch, AckWait: 2 * time.Second})
}
