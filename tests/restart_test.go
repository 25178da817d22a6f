package tests

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/cmd/jetmedia/app"
	"github.com/jetmedia/jetmedia/events"
	"github.com/jetmedia/jetmedia/pipeline/natsnode"
	"github.com/jetmedia/jetmedia/projections"
	"github.com/jetmedia/jetmedia/tests/rtcclient"
)

// TestRestartKeepsHistory: a node stopped while a publisher is live and started again on the
// same data dir still has every event (none twice) and the projected state, shows the
// publisher gone (it left with reason "shutdown"), and keeps working.
func TestRestartKeepsHistory(t *testing.T) {
	cfg := nodeConfig(t, "restart")
	node := startNode(t, cfg)
	api := clientAPI(t)
	room := newRoom("restart")
	ctx := ctxT(t, 60*time.Second)

	pub, err := rtcclient.Publish(ctx, api, node.HTTPURL(), room, asPublisher(t, room))
	require.NoError(t, err)
	viewer, err := rtcclient.Play(ctx, api, node.HTTPURL(), room, asViewer(t, room))
	require.NoError(t, err)
	require.Eventually(t, func() bool { return viewer.Video.Load() > 10 }, 10*time.Second, 20*time.Millisecond)
	require.NoError(t, viewer.Close())

	require.NoError(t, node.Close()) // the publisher is still connected
	_ = pub.Close(false)

	before := eventsOf(t, room, cfg)
	require.Equal(t, events.TypePeerLeft, before[len(before)-1].Type)

	node = startNode(t, cfg)
	require.NoError(t, node.WaitProjected(ctx))
	after := roomEvents(t, node.JetStream(), room)
	require.Equal(t, ids(before), ids(after), "same events after restart")
	seen := map[string]bool{}
	for _, e := range after {
		require.False(t, seen[e.ID], "event %s stored twice", e.ID)
		seen[e.ID] = true
	}
	state, err := projections.LoadRoom(ctx, node.Rooms(), room)
	require.NoError(t, err)
	require.Empty(t, state.Peers, "the publisher left at shutdown")
	require.Equal(t, after[len(after)-1].Seq, state.LastSeq)

	// The restarted node serves the room again and extends the same history.
	pub2 := publishTracks(t, ctx, api, node, room)
	t.Cleanup(func() { _ = pub2.Close(true) })
	extended := roomEvents(t, node.JetStream(), room)
	require.Equal(t, ids(after), ids(extended[:len(after)]))
	require.Equal(t, events.TypePeerJoined, extended[len(after)].Type, "no second room.created")
	requireRebuildEqual(t, node)
}

// eventsOf reads a stopped node's log by opening its data dir with a bare embedded server.
func eventsOf(t *testing.T, room string, c app.Config) []events.Envelope {
	t.Helper()
	srv, err := natsnode.StartServer(ctxT(t, 10*time.Second), natsnode.ServerConfig{Name: "reader", JetStream: true, StoreDir: c.DataDir})
	require.NoError(t, err)
	defer srv.Shutdown()
	nc, err := srv.Connect("reader")
	require.NoError(t, err)
	defer nc.Close()
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	return roomEvents(t, js, room)
}

func ids(evs []events.Envelope) []string {
	out := make([]string, len(evs))
	for i, e := range evs {
		out[i] = e.ID
	}
	return out
}
