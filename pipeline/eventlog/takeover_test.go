package eventlog_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/pipeline/eventlog"
)

// A reader taking a durable over from another process (a projection's writer that died) that
// was handed events and never acknowledged them gets every event after the ack floor at once,
// in order: the durable is reset to its ack floor, not left to redeliver them after AckWait
// (30 s here) behind the events appended since.
func TestBatchConsumerTakesOverAtAckFloor(t *testing.T) {
	n := start(t)
	ctx := t.Context()
	a := eventlog.NewAppender(n.js, "n1")
	_, err := a.Append(ctx, joined(t, "r", "p0"))
	require.NoError(t, err) // seq 1 room.created, 2 peer.joined
	cfg := eventlog.BatchConsumerConfig{Durable: "taken", Filter: eventlog.EventsSubjects, Batch: 8,
		RetryDelay: time.Millisecond, AckWait: 30 * time.Second}

	// The previous reader, another connection: it acknowledged seq 1, was handed seq 2 and died.
	old := connect(t, n.srv, "old")
	c, err := eventlog.NewBatchConsumer(old, cfg)
	require.NoError(t, err)
	require.NoError(t, c.Declare(ctx))
	cons, err := old.Consumer(ctx, eventlog.StreamEvents, "taken")
	require.NoError(t, err)
	batch, err := cons.Fetch(2, jetstream.FetchMaxWait(5*time.Second))
	require.NoError(t, err)
	for m := range batch.Messages() {
		if md, err := m.Metadata(); err == nil && md.Sequence.Stream == 1 {
			require.NoError(t, m.DoubleAck(ctx))
		}
	}
	info, err := cons.Info(ctx)
	require.NoError(t, err)
	require.Equal(t, 1, info.NumAckPending, "seq 2 handed over, not acknowledged")
	old.Conn().Close()

	for i := range 3 {
		_, err := a.Append(ctx, joined(t, "r", fmt.Sprint("p", i+1)))
		require.NoError(t, err) // seqs 3-5
	}
	c2, err := eventlog.NewBatchConsumer(n.js, cfg)
	require.NoError(t, err)
	rec := &batchRecorder{}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- c2.Run(runCtx, rec.handle) }()
	defer func() { cancel(); require.NoError(t, <-done) }()
	require.Eventually(t, func() bool { seqs, _ := rec.snapshot(); return len(seqs) >= 4 }, 10*time.Second, 5*time.Millisecond,
		"within seconds, not after AckWait")
	seqs, _ := rec.snapshot()
	require.Equal(t, []uint64{2, 3, 4, 5}, seqs, "everything after the ack floor, in order")
}
