package eventlog_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/pipeline/eventlog"
)

// The appender answers its publishes on reply inboxes it keeps between appends: as many as
// appends ran at once, never one per append, and Close gives them all up while the appender
// stays usable.
func TestAppendReusesReplyInboxes(t *testing.T) {
	n := start(t)
	ctx := t.Context()
	nc := n.js.Conn()
	base := subscriptions(t, n)
	a := eventlog.NewAppender(n.js, "n1")
	const writers, appends = 8, 40
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			room := fmt.Sprintf("r%d", w%4)
			for j := range appends {
				_, err := a.Append(ctx, joined(t, room, fmt.Sprintf("w%d-%d", w, j)))
				require.NoError(t, err)
			}
		})
	}
	wg.Wait()
	inboxes := nc.NumSubscriptions() - base
	require.Positive(t, inboxes)
	require.LessOrEqual(t, inboxes, writers)

	a.Close()
	require.Equal(t, base, nc.NumSubscriptions())
	_, err := a.Append(ctx, joined(t, "r0", "after-close"))
	require.NoError(t, err)
	require.Equal(t, base, nc.NumSubscriptions(), "an append after Close leaves no inbox behind")
	// (Reading the log below subscribes on the same connection: checked last.)
	for r := range 4 {
		want := 1 + writers/4*appends
		if r == 0 {
			want++
		}
		requireIntact(t, n.js, fmt.Sprintf("r%d", r), want)
	}
}

// An append whose caller gives up while its publish is in flight drops the inbox: the answer
// may still come, and must not be read as the answer to the next append's publish (that
// append would take the wrong sequence and chain after the wrong hash). Callers cancel at
// random points here; whatever they saw, the chain verifies over the stored bytes, every
// acknowledged event is stored once, and no inbox is left behind.
func TestAppendCancelledMidPublish(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	n := start(t)
	nc := n.js.Conn()
	base := subscriptions(t, n)
	a := eventlog.NewAppender(n.js, "n1")
	acked := map[string]bool{}
	cancelled := 0
	for i := range 300 {
		e := joined(t, "r", fmt.Sprintf("p%d", i))
		ctx, cancel := context.WithCancel(t.Context())
		stop := time.AfterFunc(time.Duration(rng.IntN(3000))*time.Microsecond, cancel)
		_, err := a.Append(ctx, e)
		stop.Stop()
		cancel()
		switch {
		case err == nil:
			acked[e.ID] = true
		case errors.Is(err, context.Canceled):
			cancelled++
		default:
			require.NoError(t, err)
		}
	}
	t.Logf("%d acknowledged, %d cancelled", len(acked), cancelled)
	_, err := a.Append(t.Context(), joined(t, "r", "last"))
	require.NoError(t, err)

	a.Close()
	require.Equal(t, base, nc.NumSubscriptions(), "every dropped inbox was unsubscribed")

	stored := readRoom(t, n.js, "r")
	seen := map[string]int{}
	for _, e := range stored {
		seen[e.ID]++
	}
	for id := range acked {
		require.Equal(t, 1, seen[id], "acknowledged event %s stored once", id)
	}
	requireIntact(t, n.js, "r", len(stored))
}

// subscriptions is how many subscriptions the node's connection has besides the appender's:
// its shared response subscription, made by the first JetStream API request, included.
func subscriptions(t *testing.T, n node) int {
	t.Helper()
	_, err := n.js.Stream(t.Context(), eventlog.StreamEvents)
	require.NoError(t, err)
	return n.js.Conn().NumSubscriptions()
}

// A closed connection fails an append with the connection's error, not with the publish
// timeout.
func TestAppendOnClosedConnection(t *testing.T) {
	n := start(t)
	a := eventlog.NewAppender(n.js, "n1")
	_, err := a.Append(t.Context(), joined(t, "r", "p1"))
	require.NoError(t, err)
	n.js.Conn().Close()
	_, err = a.Append(t.Context(), joined(t, "r", "p2"))
	require.ErrorIs(t, err, nats.ErrConnectionClosed)
}

// A second answer to a publish (JetStream sends one; two streams storing the same subject
// would send two) arrives after the appender took the first and went on: it must not be read
// as the answer to a later publish on the same inbox. Here a plain subscriber on the room's
// subjects answers every publish again, with a made-up sequence, once the append returned.
func TestAppendIgnoresSecondAnswer(t *testing.T) {
	n := start(t)
	a := eventlog.NewAppender(n.js, "n1")
	_, err := a.Append(t.Context(), joined(t, "r", "first"))
	require.NoError(t, err)

	other := connect(t, n.srv, "second-answer").Conn()
	msgs := make(chan *nats.Msg, 64)
	sub, err := other.ChanSubscribe(eventlog.RoomEventsFilter("r"), msgs)
	require.NoError(t, err)
	defer func() { _ = sub.Unsubscribe() }()
	require.NoError(t, other.Flush())

	for i := range 50 {
		seq, err := a.Append(t.Context(), joined(t, "r", fmt.Sprintf("p%d", i)))
		require.NoError(t, err)
		require.Equal(t, uint64(i+3), seq, "the stream's answer, not the made-up one")
		m := <-msgs
		require.NoError(t, other.Publish(m.Reply, []byte(`{"stream":"EVENTS","seq":999999}`)))
		// Once the server has it, it reaches the appender before the next publish's answer
		// (one connection's messages arrive in order): without the flush, a delayed second
		// answer could also come after the inbox's next four publishes, which the appender
		// does not guard against (see replyInbox).
		require.NoError(t, other.Flush())
	}
	requireIntact(t, n.js, "r", 52)
}
