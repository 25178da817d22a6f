package eventlog_test

import (
	"context"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/events"
	"github.com/jetmedia/jetmedia/pipeline/eventlog"
)

// chainOf checks a room's hash chain over its stored bytes.
func chainOf(t testing.TB, js jetstream.JetStream, room string) *events.Chain {
	t.Helper()
	c := &events.Chain{Room: room}
	err := eventlog.ReadStored(context.Background(), js, eventlog.ReadOptions{Filter: eventlog.RoomEventsFilter(room)},
		func(s eventlog.StoredEvent) error {
			_ = c.Add(s.Seq, s.Data) // a break is kept in c.Break
			return nil
		})
	require.NoError(t, err)
	return c
}

func requireIntact(t testing.TB, js jetstream.JetStream, room string, n int) {
	t.Helper()
	c := chainOf(t, js, room)
	require.Nil(t, c.Break)
	require.Equal(t, n, c.Events)
	require.Zero(t, c.Legacy)
	require.False(t, c.Truncated)
}

// forge publishes an event straight onto the room's subject, bypassing the Appender.
func forge(t testing.TB, js jetstream.JetStream, e events.Envelope) uint64 {
	t.Helper()
	raw, err := events.Encode(e)
	require.NoError(t, err)
	ack, err := js.Publish(context.Background(), eventlog.EventSubject(e.Room, events.Kind(e.Type)), raw)
	require.NoError(t, err)
	return ack.Sequence
}

func TestChainCatchesForgery(t *testing.T) {
	n := start(t)
	ctx := t.Context()
	a := eventlog.NewAppender(n.js, "n1")
	for _, p := range []string{"p1", "p2", "p3"} {
		_, err := a.Append(ctx, joined(t, "r", p))
		require.NoError(t, err)
	}
	requireIntact(t, n.js, "r", 4)

	// A forger without the chain: no prevhash.
	forged := forge(t, n.js, joined(t, "r", "mallory"))
	// The appender's head is stale: it conflicts, re-reads the head (the forged event) and
	// chains after it, so the chain breaks exactly at the forged event.
	_, err := a.Append(ctx, joined(t, "r", "p4"))
	require.NoError(t, err)
	c := chainOf(t, n.js, "r")
	require.NotNil(t, c.Break)
	require.Equal(t, forged, c.Break.Seq)
	require.Equal(t, uint64(4), c.Break.PrevSeq)
	require.Empty(t, c.Break.Got)
	require.ErrorIs(t, c.Break, events.ErrChainBroken)

	// A forger with a wrong prevhash (say, a copy of a real event's) in another room.
	for _, p := range []string{"p1", "p2"} {
		_, err := a.Append(ctx, joined(t, "s", p))
		require.NoError(t, err)
	}
	stored := readRoom(t, n.js, "s")
	copied := joined(t, "s", "mallory")
	copied.PrevHash = stored[1].PrevHash // claims to follow seq of stored[0]
	forged = forge(t, n.js, copied)
	c = chainOf(t, n.js, "s")
	require.NotNil(t, c.Break)
	require.Equal(t, forged, c.Break.Seq)
	require.Equal(t, copied.PrevHash, c.Break.Got)

	// The limit: a forger who knows the scheme and appends at the head links correctly. Only
	// an anchored head hash (recorded outside the log) shows this one.
	head := chainOf(t, n.js, "u")
	require.Zero(t, head.Events)
	_, err = a.Append(ctx, joined(t, "u", "p1"))
	require.NoError(t, err)
	head = chainOf(t, n.js, "u")
	clever := joined(t, "u", "mallory")
	clever.PrevHash = head.Head
	forge(t, n.js, clever)
	require.Nil(t, chainOf(t, n.js, "u").Break)
}

// The EVENTS stream refuses to delete or purge, so an event cannot be removed from the middle
// through the JetStream API; the chain would show it if it were (events.TestChain covers that).
func TestStreamDeniesDeletes(t *testing.T) {
	n := start(t)
	ctx := t.Context()
	a := eventlog.NewAppender(n.js, "n1")
	_, err := a.Append(ctx, joined(t, "r", "p1"), joined(t, "r", "p2"))
	require.NoError(t, err)
	stream, err := n.js.Stream(ctx, eventlog.StreamEvents)
	require.NoError(t, err)
	require.Error(t, stream.DeleteMsg(ctx, 2))
	require.Error(t, stream.SecureDeleteMsg(ctx, 2))
	require.Error(t, stream.Purge(ctx))
	require.Error(t, stream.Purge(ctx, jetstream.WithPurgeSubject(eventlog.RoomEventsFilter("r"))))
	requireIntact(t, n.js, "r", 3)
}
