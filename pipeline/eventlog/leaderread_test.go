package eventlog_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/events"
	"github.com/jetmedia/jetmedia/pipeline/eventlog"
)

// TestNextRoomEvent: the leader's answer to "the room's first event at or after seq", on a
// log with two rooms interleaved; none after the room's newest event, nor for a room the log
// does not hold; and ReadAtLeader's by sequence.
func TestNextRoomEvent(t *testing.T) {
	n := start(t)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	app := eventlog.NewAppender(n.js, "n1")
	var rSeqs []uint64
	for _, peer := range []string{"a", "b", "c"} {
		seq, err := app.Append(ctx, joined(t, "r", peer))
		require.NoError(t, err)
		rSeqs = append(rSeqs, seq)
		_, err = app.Append(ctx, joined(t, "q", peer))
		require.NoError(t, err)
	}
	for i, seq := range rSeqs {
		st, ok, err := eventlog.NextRoomEvent(ctx, n.js, "r", seq)
		require.NoError(t, err)
		require.True(t, ok)
		require.Equal(t, seq, st.Seq)
		require.Equal(t, "ev.r.peer_joined", st.Subject)
		e, err := events.Decode(st.Data)
		require.NoError(t, err)
		require.Equal(t, "r", e.Room)
		if i > 0 {
			// From just after the previous one: the q event between is skipped.
			st, ok, err = eventlog.NextRoomEvent(ctx, n.js, "r", rSeqs[i-1]+1)
			require.NoError(t, err)
			require.True(t, ok)
			require.Equal(t, seq, st.Seq)
		}
	}
	_, ok, err := eventlog.NextRoomEvent(ctx, n.js, "r", rSeqs[len(rSeqs)-1]+1)
	require.NoError(t, err)
	require.False(t, ok, "nothing after the room's newest event")
	_, ok, err = eventlog.NextRoomEvent(ctx, n.js, "nobody", 0)
	require.NoError(t, err)
	require.False(t, ok)

	// By sequence: each stored event, and none past the head.
	st, ok, err := eventlog.ReadAtLeader(ctx, n.js, rSeqs[1])
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, rSeqs[1], st.Seq)
	require.Equal(t, "ev.r.peer_joined", st.Subject)
	st, ok, err = eventlog.ReadAtLeader(ctx, n.js, rSeqs[1]+1)
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, "ev.q.peer_joined", st.Subject)
	_, ok, err = eventlog.ReadAtLeader(ctx, n.js, rSeqs[len(rSeqs)-1]+10)
	require.NoError(t, err)
	require.False(t, ok, "nothing past the head")
}

// BenchmarkNextRoomEvent: one leader read, what the rooms projection adds to each read of a
// room from the bucket (one node, in process; for comparison, a direct get by sequence).
func BenchmarkNextRoomEvent(b *testing.B) {
	n := start(b)
	ctx := context.Background()
	app := eventlog.NewAppender(n.js, "n1")
	for _, peer := range []string{"a", "b"} {
		for _, room := range []string{"r", "q"} {
			_, err := app.Append(ctx, joined(b, room, peer))
			require.NoError(b, err)
		}
	}
	b.Run("leader", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, ok, err := eventlog.NextRoomEvent(ctx, n.js, "r", 2); err != nil || !ok {
				b.Fatal(ok, err)
			}
		}
	})
	b.Run("direct", func(b *testing.B) {
		s, err := n.js.Stream(ctx, eventlog.StreamEvents)
		require.NoError(b, err)
		b.ReportAllocs()
		for b.Loop() {
			if _, err := s.GetMsg(ctx, 2); err != nil {
				b.Fatal(err)
			}
		}
	})
}
