package presence_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/events"
	"github.com/jetmedia/jetmedia/pipeline/eventlog"
	"github.com/jetmedia/jetmedia/projections"
	"github.com/jetmedia/jetmedia/projections/presence"
)

// TestForgetEdge: a real server whose log sources an edge of domain edge-x (which does not
// answer: the edge is dead) and whose rooms bucket shows x's publisher and viewer. Forget
// refuses bad names and edges the region does not know; forgetting x (twice at once) records
// it once, removes the source, and ends x's two sessions once (a second forget, before and after the bucket shows
// the ends, writes nothing); the edge's check then stays out; unforget lets it back in.
func TestForgetEdge(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	js, rooms, _ := startLog(ctx, t, "forget-test")
	added, err := eventlog.AddEdgeSource(ctx, js, "edge-x")
	require.NoError(t, err)
	require.True(t, added)
	domains, err := eventlog.EdgeSources(ctx, js)
	require.NoError(t, err)
	require.Equal(t, []string{"edge-x"}, domains)

	_, err = eventlog.NewAppender(js, "x").Append(ctx, twoNodeRoom(t)[1:]...)
	require.NoError(t, err)
	fold := func() {
		runner := projections.NewKVRunner(rooms, nil)
		require.NoError(t, eventlog.Read(ctx, js, eventlog.ReadOptions{Filter: eventlog.EventsSubjects}, func(e events.Envelope) error {
			return runner.Apply(ctx, e)
		}))
	}
	fold()
	req := presence.ForgetRequest{Node: "x", By: "ops", Writer: "cli", Settle: 100 * time.Millisecond}

	_, err = presence.Forget(ctx, js, presence.ForgetRequest{Node: "x.*", By: "ops"})
	require.ErrorIs(t, err, presence.ErrBadName)
	_, err = presence.Forget(ctx, js, presence.ForgetRequest{Node: "y", By: "ops"})
	require.ErrorIs(t, err, presence.ErrNotEdge)
	_, found, err := presence.EdgeForgotten(ctx, js, "edge-y")
	require.NoError(t, err)
	require.False(t, found, "a refused forget records nothing")

	// Two operators at once: one record, the ends stored once.
	var results [2]presence.ForgetResult
	var errs [2]error
	var wg sync.WaitGroup
	for i := range results {
		wg.Go(func() { results[i], errs[i] = presence.Forget(ctx, js, req) })
	}
	wg.Wait()
	require.NoError(t, errs[0])
	require.NoError(t, errs[1])
	require.NotEqual(t, results[0].Already, results[1].Already, "one of them recorded the edge")
	res := results[0]
	if res.Already {
		res = results[1]
	}
	require.Equal(t, 2, res.Remaining, "nothing folds the log in this test")
	require.Contains(t, res.Lease, "unreadable")
	require.True(t, results[0].SourceRemoved || results[1].SourceRemoved)
	require.GreaterOrEqual(t, results[0].Ended+results[1].Ended, 2, "p and w")
	domains, err = eventlog.EdgeSources(ctx, js)
	require.NoError(t, err)
	require.Empty(t, domains)
	lefts := func() (n int) {
		require.NoError(t, eventlog.Read(ctx, js, eventlog.ReadOptions{Filter: eventlog.RoomEventsFilter("r")}, func(e events.Envelope) error {
			if l, err := e.Payload(); err == nil {
				if l, ok := l.(events.PeerLeft); ok {
					require.Equal(t, events.ReasonNodeLost, l.Reason)
					require.Equal(t, "node x lost: forgotten by ops", l.Cause.Detail)
					n++
				}
			}
			return nil
		}))
		return n
	}
	require.Equal(t, 2, lefts())

	// Again while the bucket still shows the sessions: the same ids, stored once.
	res, err = presence.Forget(ctx, js, req)
	require.NoError(t, err)
	require.True(t, res.Noop(), "%+v", res)
	fold()
	res, err = presence.Forget(ctx, js, req)
	require.NoError(t, err)
	require.True(t, res.Noop(), "%+v", res)
	require.Zero(t, res.Remaining)
	require.Equal(t, 2, lefts())

	state, f, err := presence.KeepEdgeSourced(ctx, js, "edge-x")
	require.NoError(t, err)
	require.Equal(t, presence.SourceForgotten, state)
	require.Equal(t, "ops", f.By)
	_, err = eventlog.AddEdgeSource(ctx, js, "edge-x") // an add that raced the forget
	require.NoError(t, err)
	state, _, err = presence.KeepEdgeSourced(ctx, js, "edge-x")
	require.NoError(t, err)
	require.Equal(t, presence.SourceForgotten, state)
	domains, err = eventlog.EdgeSources(ctx, js)
	require.NoError(t, err)
	require.Empty(t, domains, "the forgotten edge's check takes a raced source out")

	ok, err := presence.Unforget(ctx, js, "edge-x")
	require.NoError(t, err)
	require.True(t, ok)
	ok, err = presence.Unforget(ctx, js, "edge-x")
	require.NoError(t, err)
	require.False(t, ok)
	state, _, err = presence.KeepEdgeSourced(ctx, js, "edge-x")
	require.NoError(t, err)
	require.Equal(t, presence.SourceAdded, state)
}
