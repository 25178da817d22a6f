package eventlog_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/pipeline/eventlog"
)

func TestBatchConsumerValidates(t *testing.T) {
	n := start(t)
	for _, cfg := range []eventlog.BatchConsumerConfig{
		{Filter: eventlog.EventsSubjects},
		{Durable: "d"},
		{Durable: "d", Filter: eventlog.EventsSubjects, Batch: -1},
	} {
		_, err := eventlog.NewBatchConsumer(n.js, cfg)
		require.Error(t, err, "%+v", cfg)
	}
}

// batchRecorder is a BatchHandler that records what it was handed and fails on demand.
type batchRecorder struct {
	mu      sync.Mutex
	seqs    []uint64 // every event handed over, in order, repeats included
	sizes   []int
	failing int // fail this many hand-overs
}

func (r *batchRecorder) handle(_ context.Context, batch []eventlog.StoredEvent) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sizes = append(r.sizes, len(batch))
	for _, st := range batch {
		r.seqs = append(r.seqs, st.Seq)
	}
	if r.failing > 0 {
		r.failing--
		return errors.New("write failed")
	}
	return nil
}

func (r *batchRecorder) snapshot() ([]uint64, []int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]uint64(nil), r.seqs...), append([]int(nil), r.sizes...)
}

// The consumer hands events over in log order, in batches of at most Batch; a batch the
// handler fails is handed over again, whole, before any event after it; a restarted consumer
// resumes after the last accepted batch.
func TestBatchConsumer(t *testing.T) {
	n := start(t)
	ctx := t.Context()
	a := eventlog.NewAppender(n.js, "n1")
	for i := range 50 {
		_, err := a.Append(ctx, joined(t, fmt.Sprintf("room%d", i%3), fmt.Sprint("p", i)))
		require.NoError(t, err)
	}
	const stored = 53 // 50 + a room.created per room

	run := func(rec *batchRecorder) (stop func()) {
		c, err := eventlog.NewBatchConsumer(n.js, eventlog.BatchConsumerConfig{Durable: "batches",
			Filter: eventlog.EventsSubjects, Batch: 8, RetryDelay: time.Millisecond})
		require.NoError(t, err)
		runCtx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- c.Run(runCtx, rec.handle) }()
		return func() { cancel(); require.NoError(t, <-done) }
	}
	rec := &batchRecorder{failing: 2}
	stop := run(rec)
	require.Eventually(t, func() bool {
		seqs, _ := rec.snapshot()
		return len(seqs) > 0 && seqs[len(seqs)-1] == stored
	}, 30*time.Second, 5*time.Millisecond)
	stop()
	seqs, sizes := rec.snapshot()
	for _, s := range sizes {
		require.LessOrEqual(t, s, 8)
	}
	// The first batch was handed over three times (two failures), then everything in order.
	first := sizes[0]
	require.Equal(t, sizes[0], sizes[1])
	require.Equal(t, sizes[0], sizes[2])
	want := []uint64{}
	for range 3 {
		for s := range first {
			want = append(want, uint64(s+1))
		}
	}
	for s := first + 1; s <= stored; s++ {
		want = append(want, uint64(s))
	}
	require.Equal(t, want, seqs)

	// More events while it is stopped; a restart hands over only those.
	for i := range 5 {
		_, err := a.Append(ctx, joined(t, "room0", fmt.Sprint("late", i)))
		require.NoError(t, err)
	}
	rec2 := &batchRecorder{}
	stop = run(rec2)
	require.Eventually(t, func() bool {
		seqs, _ := rec2.snapshot()
		return len(seqs) == 5
	}, 30*time.Second, 5*time.Millisecond)
	stop()
	seqs, _ = rec2.snapshot()
	require.Equal(t, []uint64{stored + 1, stored + 2, stored + 3, stored + 4, stored + 5}, seqs)
}

// A durable deleted under a running consumer (an operator's cleanup) is declared again and
// consumption goes on: the events after the deletion are handed over, Run does not end.
func TestBatchConsumerRedeclaresDeleted(t *testing.T) {
	n := start(t)
	ctx := t.Context()
	a := eventlog.NewAppender(n.js, "n1")
	_, err := a.Append(ctx, joined(t, "r", "p0"))
	require.NoError(t, err)
	c, err := eventlog.NewBatchConsumer(n.js, eventlog.BatchConsumerConfig{Durable: "deleted",
		Filter: eventlog.EventsSubjects, RetryDelay: time.Millisecond})
	require.NoError(t, err)
	rec := &batchRecorder{}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- c.Run(runCtx, rec.handle) }()
	last := func() uint64 {
		seqs, _ := rec.snapshot()
		if len(seqs) == 0 {
			return 0
		}
		return seqs[len(seqs)-1]
	}
	require.Eventually(t, func() bool { return last() == 2 }, 30*time.Second, 5*time.Millisecond)

	require.NoError(t, n.js.DeleteConsumer(ctx, eventlog.StreamEvents, "deleted"))
	seq, err := a.Append(ctx, joined(t, "r", "p1"))
	require.NoError(t, err)
	require.Eventually(t, func() bool { return last() == seq }, 30*time.Second, 5*time.Millisecond)
	select {
	case err := <-done:
		t.Fatalf("Run ended: %v", err)
	default:
	}
	cancel()
	require.NoError(t, <-done)
}

// Events appended while the handler is busy come as one batch, not one batch each: the server
// pushes each to the open pull request with nothing pending behind it, so only what the client
// holds already tells that a batch can be bigger.
func TestBatchConsumerBatchesWhileBusy(t *testing.T) {
	n := start(t)
	ctx := t.Context()
	a := eventlog.NewAppender(n.js, "n1")
	_, err := a.Append(ctx, joined(t, "r", "p0"))
	require.NoError(t, err) // seqs 1 and 2
	c, err := eventlog.NewBatchConsumer(n.js, eventlog.BatchConsumerConfig{Durable: "busy",
		Filter: eventlog.EventsSubjects, Batch: 64, RetryDelay: time.Millisecond})
	require.NoError(t, err)
	busy, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	rec := &batchRecorder{}
	handle := func(ctx context.Context, batch []eventlog.StoredEvent) error {
		once.Do(func() { close(busy); <-release }) // the first batch is slow
		return rec.handle(ctx, batch)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- c.Run(runCtx, handle) }()
	defer func() { cancel(); require.NoError(t, <-done) }()

	<-busy
	const more = 20
	for i := range more {
		_, err := a.Append(ctx, joined(t, "r", fmt.Sprint("p", i+1)))
		require.NoError(t, err)
	}
	cons, err := n.js.Consumer(ctx, eventlog.StreamEvents, "busy")
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		info, err := cons.Info(ctx)
		return err == nil && info.NumPending == 0 && info.NumAckPending == 2+more
	}, 10*time.Second, 5*time.Millisecond, "every event delivered to the client while the handler is busy")
	close(release)
	require.Eventually(t, func() bool { seqs, _ := rec.snapshot(); return len(seqs) == 2+more }, 10*time.Second, 5*time.Millisecond)
	_, sizes := rec.snapshot()
	require.Equal(t, 2+more-sizes[0], sizes[1], "the events delivered meanwhile, in one batch: %v", sizes)
}

// A Gapless consumer handed an event after one it never got (here another reader took it and
// never acknowledged it; after a kill it is a message the dead consumer leader handed out and
// lost) reads the missing event from the log and hands it over first, in order; without
// Gapless the missing event comes back only after AckWait (30 s here), behind the others.
func TestBatchConsumerGapless(t *testing.T) {
	for _, gapless := range []bool{true, false} {
		t.Run(fmt.Sprintf("gapless=%v", gapless), func(t *testing.T) {
			n := start(t)
			ctx := t.Context()
			a := eventlog.NewAppender(n.js, "n1")
			_, err := a.Append(ctx, joined(t, "r", "p0"))
			require.NoError(t, err) // seqs 1, 2
			c, err := eventlog.NewBatchConsumer(n.js, eventlog.BatchConsumerConfig{Durable: "gaps",
				Filter: eventlog.EventsSubjects, RetryDelay: time.Millisecond, AckWait: 30 * time.Second, Gapless: gapless})
			require.NoError(t, err)
			rec := &batchRecorder{}
			last := func() uint64 {
				seqs, _ := rec.snapshot()
				if len(seqs) == 0 {
					return 0
				}
				return seqs[len(seqs)-1]
			}
			run := func(until uint64) {
				runCtx, cancel := context.WithCancel(ctx)
				done := make(chan error, 1)
				go func() { done <- c.Run(runCtx, rec.handle) }()
				require.Eventually(t, func() bool { return last() == until }, 10*time.Second, 5*time.Millisecond)
				cancel()
				require.NoError(t, <-done)
			}
			run(2)
			cons, err := n.js.Consumer(ctx, eventlog.StreamEvents, "gaps")
			require.NoError(t, err)
			require.Eventually(t, func() bool { // the stopped run's pull request expired
				info, err := cons.Info(ctx)
				return err == nil && info.NumWaiting == 0
			}, 10*time.Second, 20*time.Millisecond)
			_, err = a.Append(ctx, joined(t, "r", "p1"))
			require.NoError(t, err) // seq 3
			lost, err := cons.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
			require.NoError(t, err)
			for m := range lost.Messages() {
				md, err := m.Metadata()
				require.NoError(t, err)
				require.Equal(t, uint64(3), md.Sequence.Stream, "taken and never acknowledged")
			}
			for i := range 2 {
				_, err := a.Append(ctx, joined(t, "r", fmt.Sprint("p", i+2)))
				require.NoError(t, err) // seqs 4, 5
			}
			run(5)
			seqs, _ := rec.snapshot()
			if gapless {
				require.Equal(t, []uint64{1, 2, 3, 4, 5}, seqs, "3 read from the log, in order")
			} else {
				require.Equal(t, []uint64{1, 2, 4, 5}, seqs, "3 comes back only after AckWait")
			}
		})
	}
}
