package eventlog_test

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/events"
	"github.com/jetmedia/jetmedia/pipeline/eventlog"
)

// An acknowledged append as its writer saw it.
type acked struct {
	writer int
	ids    []string
	seq    uint64
	// fresh is false for a retry or a shared event (another call may have stored it first):
	// then the sequence Append returns is the room's head, not the event's.
	fresh bool
}

// TestAppendManyWritersTwoNodes is a property test of the appender under contention: many
// writers on one room through two appenders on two connections (two nodes' views of one
// log), with retries of acknowledged appends, the same event appended through both nodes at
// once, and events with a shared id (as presence's and room.created are). Whatever the
// interleaving, the room's chain verifies over the stored bytes, every acknowledged event is
// stored exactly once, each writer's appends are stored in the order it made them, and a
// fresh append's returned sequence is where its last event is stored.
func TestAppendManyWritersTwoNodes(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	n := start(t)
	ctx := t.Context()
	nodes := []*eventlog.Appender{
		eventlog.NewAppender(connect(t, n.srv, "node-a"), "a"),
		eventlog.NewAppender(connect(t, n.srv, "node-b"), "b"),
	}
	const writersPerNode, appendsPerWriter = 6, 30
	var (
		mu  sync.Mutex
		log []acked
	)
	record := func(a acked) {
		mu.Lock()
		log = append(log, a)
		mu.Unlock()
	}
	var wg sync.WaitGroup
	for w := range writersPerNode * len(nodes) {
		rng := rand.New(rand.NewPCG(seed, uint64(w)))
		own, other := nodes[w%len(nodes)], nodes[(w+1)%len(nodes)]
		wg.Go(func() {
			var last []events.Envelope
			for j := range appendsPerWriter {
				evs := []events.Envelope{joined(t, "r", fmt.Sprintf("w%d-%d", w, j))}
				if rng.IntN(5) == 0 { // a call with two events
					evs = append(evs, joined(t, "r", fmt.Sprintf("w%d-%d-b", w, j)))
				}
				switch k := rng.IntN(10); {
				case k == 0 && last != nil:
					// A retry of the previous, acknowledged append: stored once.
					seq, err := own.Append(ctx, last...)
					require.NoError(t, err)
					record(acked{writer: w, ids: ids(last), seq: seq})
				case k == 1:
					// The same events through both nodes at once (a writer that failed over
					// and retried elsewhere while its first try was still in flight).
					var twice sync.WaitGroup
					for _, a := range []*eventlog.Appender{own, other} {
						twice.Go(func() {
							seq, err := a.Append(ctx, evs...)
							require.NoError(t, err)
							record(acked{writer: -1, ids: ids(evs), seq: seq})
						})
					}
					twice.Wait()
					record(acked{writer: w, ids: ids(evs)})
					last = evs
					continue
				case k == 2:
					// A shared id, as two survivors ending the same lost peer write.
					shared := joined(t, "r", fmt.Sprintf("lost-w%d-%d", w, j))
					shared.ID = fmt.Sprintf("lost-w%d-%d", w, j)
					for _, a := range []*eventlog.Appender{own, other} {
						seq, err := a.Append(ctx, shared)
						require.NoError(t, err)
						record(acked{writer: -1, ids: []string{shared.ID}, seq: seq})
					}
				}
				seq, err := own.Append(ctx, evs...)
				require.NoError(t, err)
				record(acked{writer: w, ids: ids(evs), seq: seq, fresh: true})
				last = evs
			}
		})
	}
	wg.Wait()

	stored := readRoom(t, n.js, "r")
	pos := make(map[string]int, len(stored))
	for i, e := range stored {
		_, dup := pos[e.ID]
		require.False(t, dup, "event %s stored twice", e.ID)
		pos[e.ID] = i
		require.Equal(t, i == 0, e.Type == events.TypeRoomCreated, "room.created must be first and once")
	}
	requireIntact(t, n.js, "r", len(stored))

	lastPos := map[int]int{}
	for _, a := range log {
		for i, id := range a.ids {
			p, ok := pos[id]
			require.True(t, ok, "acknowledged event %s is not in the log", id)
			if i > 0 {
				// In order, not necessarily adjacent: a conflict between two events of a call
				// lets another node's event in between, and the chain still holds.
				require.Greater(t, p, pos[a.ids[i-1]], "one call's events out of order")
			}
		}
		if a.fresh {
			require.Equal(t, stored[pos[a.ids[len(a.ids)-1]]].Seq, a.seq, "append returned another sequence than its event's")
		}
	}
	// Each writer's appends are stored in its order (records are in completion order per
	// writer, and a writer waits for each append).
	mu.Lock()
	defer mu.Unlock()
	for _, a := range log {
		if a.writer < 0 {
			continue
		}
		p := pos[a.ids[0]]
		if prev, ok := lastPos[a.writer]; ok {
			require.GreaterOrEqual(t, p, prev, "writer %d's appends out of order", a.writer)
		}
		lastPos[a.writer] = p
	}
	t.Logf("%d events stored, %d acknowledged calls", len(stored), len(log))
}
