package projections_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/events"
	"github.com/jetmedia/jetmedia/pipeline/eventlog"
	"github.com/jetmedia/jetmedia/projections"
)

// TracksGone names the tracks the bucket no longer holds once it has folded the room's newest
// event, and nothing while it lags the log (a lagging bucket must never end a viewer).
func TestTracksGone(t *testing.T) {
	e := start(t)
	ctx := t.Context()
	stream, err := e.js.Stream(ctx, eventlog.StreamEvents)
	require.NoError(t, err)
	app := eventlog.NewAppender(e.js, "n1")
	appendOne := func() uint64 {
		x, err := events.New(events.Meta{Room: "r", Actor: "a", Node: "n1", Time: time.Now()},
			events.PeerJoined{Peer: events.NewID(), Transport: "whip", Role: "publisher", Node: "n1"})
		require.NoError(t, err)
		seq, err := app.Append(ctx, x)
		require.NoError(t, err)
		return seq
	}
	// The bucket as a projection that folded the room up to its newest event would hold it.
	room := projections.NewRoom("r")
	room.LastSeq = appendOne()
	room.Tracks["a"] = projections.Track{Track: "a", Peer: "p", Kind: "audio"}
	room.Tracks["b"] = projections.Track{Track: "b", Peer: "p", Kind: "video"}
	entries, err := projections.Entries(room)
	require.NoError(t, err)
	for k, v := range entries {
		_, err := e.kv.Put(ctx, k, v)
		require.NoError(t, err)
	}

	gone, err := projections.TracksGone(ctx, e.kv, stream, "r", []string{"a", "b"}, 0)
	require.NoError(t, err)
	require.Empty(t, gone, "every track there: a get each, no room read")
	gone, err = projections.TracksGone(ctx, e.kv, stream, "r", []string{"a", "b", "c"}, 0)
	require.NoError(t, err)
	require.Equal(t, []string{"c"}, gone)
	require.NoError(t, e.kv.Purge(ctx, projections.TrackKey("r", "b")))
	gone, err = projections.TracksGone(ctx, e.kv, stream, "r", []string{"a", "b"}, 0)
	require.NoError(t, err)
	require.Equal(t, []string{"b"}, gone)

	// The log moves on and the bucket has not folded it yet: no answer, whatever it lacks.
	appendOne()
	gone, err = projections.TracksGone(ctx, e.kv, stream, "r", []string{"a", "b"}, 50*time.Millisecond)
	require.NoError(t, err)
	require.Empty(t, gone, "a bucket behind the log reports nothing gone")
}
