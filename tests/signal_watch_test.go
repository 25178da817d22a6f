package tests

import (
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/ingress/signal/client"
	"github.com/jetmedia/jetmedia/pipeline/eventlog"
)

// sdkWatchRecovery bounds how long after bob's leave alice must hear of it with her watch's
// consumer gone: the session replaces a watch that stays 2 s behind the node's watch of room
// records. nats.go's own recovery of the watch (two 5 s heartbeat checks without activity)
// takes 10-20 s, so without the replacement this fails.
const sdkWatchRecovery = 6 * time.Second

// TestSDKWatchReplaced: the consumer behind an SDK session's room watch is deleted under it
// (what a SIGKILL of the server holding it amounts to; issue 13 saw nats.go's ordered consumer
// stay silent for good after one). The room changes: the session finds its watch behind the
// node's watch of room records, replaces it and tells its client what it missed, once, and
// keeps telling later changes.
func TestSDKWatchReplaced(t *testing.T) {
	node := startNode(t, nodeConfig(t, "watch"))
	room := newRoom("watch")
	ctx := ctxT(t, 60*time.Second)
	alice := joinSDK(t, ctx, node, room, "alice", false)
	bob := joinSDK(t, ctx, node, room, "bob", true)
	idb := bob.room.Self.Peer
	require.Eventually(t, func() bool { return len(alice.seen(client.TrackPublished)) == 1 && alice.received(idb) > 30 },
		20*time.Second, 10*time.Millisecond, "alice sees and receives bob's track")

	// Every session watch of the room loses its consumer.
	s, err := node.JetStream().Stream(ctx, "KV_"+eventlog.BucketRooms)
	require.NoError(t, err)
	filter := "$KV." + eventlog.BucketRooms + "." + room + ".>"
	deleted := 0
	l := s.ListConsumers(ctx)
	for ci := range l.Info() {
		if ci.Config.FilterSubject == filter || slices.Contains(ci.Config.FilterSubjects, filter) {
			require.NoError(t, s.DeleteConsumer(ctx, ci.Name))
			deleted++
		}
	}
	require.NoError(t, l.Err())
	require.Equal(t, 2, deleted, "alice's and bob's room watches")

	require.NoError(t, bob.room.Leave())
	left := time.Now()
	require.Eventually(t, func() bool {
		return len(alice.seen(client.PeerLeft)) == 1 && len(alice.seen(client.TrackUnpublished)) == 1
	}, sdkWatchRecovery, 10*time.Millisecond, "alice hears of bob's leave within %v with her watch's consumer gone", sdkWatchRecovery)
	t.Logf("bob's leave told to alice %.2f s after it, her watch's consumer deleted before it", time.Since(left).Seconds())
	require.Equal(t, idb, alice.seen(client.PeerLeft)[0].Peer.Peer)
	peers, tracks := alice.room.State()
	require.Empty(t, peers)
	require.Empty(t, tracks)

	// The replaced watch tells later changes, once each.
	carol := joinSDK(t, ctx, node, room, "carol", false)
	require.Eventually(t, func() bool { return len(alice.seen(client.PeerJoined)) == 2 }, 10*time.Second, 10*time.Millisecond,
		"alice sees carol join")
	require.Equal(t, carol.room.Self.Peer, alice.seen(client.PeerJoined)[1].Peer.Peer)
	require.NoError(t, carol.room.Leave())
	require.Eventually(t, func() bool { return len(alice.seen(client.PeerLeft)) == 2 }, 10*time.Second, 10*time.Millisecond,
		"alice sees carol leave")
	require.Len(t, alice.seen(client.TrackUnpublished), 1, "bob's track's end told once")
}
