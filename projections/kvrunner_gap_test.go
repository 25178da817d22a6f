package projections_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/events"
	"github.com/jetmedia/jetmedia/pipeline/eventlog"
	"github.com/jetmedia/jetmedia/projections"
)

// gapLog appends base's room r, interleaved with a second room q, through the appender (so
// every event chains onto its room's previous one, as in a node's log), and returns the
// stored events in log order.
func gapLog(t *testing.T, e env) []eventlog.StoredEvent {
	t.Helper()
	ctx := t.Context()
	app := eventlog.NewAppender(e.js, "n1")
	for i, x := range base(t) {
		x.Seq = 0
		_, err := app.Append(ctx, x)
		require.NoError(t, err)
		q, err := events.New(events.Meta{Room: "q", Node: "n2", Time: at(uint64(i))},
			events.PeerJoined{Peer: "q" + x.ID[:4], Transport: "whep", Role: "viewer", Node: "n2"})
		require.NoError(t, err)
		_, err = app.Append(ctx, q)
		require.NoError(t, err)
	}
	var stored []eventlog.StoredEvent
	require.NoError(t, eventlog.ReadStored(ctx, e.js, eventlog.ReadOptions{Filter: eventlog.EventsSubjects}, func(st eventlog.StoredEvent) error {
		st.Data = slices.Clone(st.Data) // valid only during the callback
		stored = append(stored, st)
		return nil
	}))
	require.Equal(t, 2*len(base(t))+1, len(stored)) // and q's room.created
	return stored
}

// requireRebuilt: the bucket equals a fold of the whole log.
func requireRebuilt(t *testing.T, e env, kv jetstream.KeyValue) {
	t.Helper()
	ctx := t.Context()
	_, err := projections.Rebuild(ctx, e.js, "want", eventlog.StorageConfig{})
	require.NoError(t, err)
	wantKV, err := e.js.KeyValue(ctx, "want")
	require.NoError(t, err)
	want, err := projections.Snapshot(ctx, wantKV)
	require.NoError(t, err)
	got, err := projections.Snapshot(ctx, kv)
	require.NoError(t, err)
	require.Equal(t, stringMap(want), stringMap(got))
}

func logRunner(t *testing.T, e env) *projections.KVRunner {
	r := projections.NewKVRunner(e.kv, nil)
	r.UseLog(e.js)
	return r
}

// TestKVRunnersSplitTheDurable is the lease hand-over of issue 13's TestKillStreamLeader
// failure, on a real server: the runner that lost the projection's lease has not noticed yet,
// so both runners pull from the one durable and each is handed part of the events. The new
// runner is handed the later ones and writes first; the old one writes the earlier ones after
// it. Folding the later events onto the room as the bucket held it (nothing yet) wrote a room
// without its room.created (created_at zero, node "") and the first peer, and the old
// runner's events, reloaded onto that record, were taken for redeliveries: lost for good.
func TestKVRunnersSplitTheDurable(t *testing.T) {
	e := start(t)
	stored := gapLog(t, e)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	half := len(stored) / 2
	newer, older := logRunner(t, e), logRunner(t, e)
	require.NoError(t, newer.HandleBatch(ctx, stored[half:]))
	require.NoError(t, older.HandleBatch(ctx, stored[:half]))
	r, err := projections.LoadRoom(ctx, e.kv, "r")
	require.NoError(t, err)
	require.Equal(t, "n1", r.Node, "the room's record has its room.created")
	require.False(t, r.CreatedAt.IsZero())
	requireRebuilt(t, e, e.kv)

	// And the other order: the old runner writes its part first, then the new one (no gap).
	kv2, err := e.js.CreateKeyValue(ctx, eventlog.RoomsBucketConfig("rooms2", eventlog.StorageConfig{}))
	require.NoError(t, err)
	first, second := projections.NewKVRunner(kv2, nil), projections.NewKVRunner(kv2, nil)
	first.UseLog(e.js)
	second.UseLog(e.js)
	require.NoError(t, first.HandleBatch(ctx, stored[:half]))
	require.NoError(t, second.HandleBatch(ctx, stored[half:]))
	requireRebuilt(t, e, kv2)
}

// TestKVRunnerRoomReadAsAbsent: a read of the bucket that finds nothing of a room the
// projection has written (what a replica behind its leader answers; here the room's keys are
// purged, so the server itself answers it) while the durable hands over the room's later
// events. The runner folds the room from the log rather than the later events onto an empty
// room.
func TestKVRunnerRoomReadAsAbsent(t *testing.T) {
	e := start(t)
	stored := gapLog(t, e)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	half := len(stored) / 2
	require.NoError(t, logRunner(t, e).HandleBatch(ctx, stored[:half]))
	keys, err := e.kv.Keys(ctx)
	require.NoError(t, err)
	for _, k := range keys {
		require.NoError(t, e.kv.Purge(ctx, k))
	}
	require.NoError(t, logRunner(t, e).HandleBatch(ctx, stored[half:]))
	requireRebuilt(t, e, e.kv)
}
