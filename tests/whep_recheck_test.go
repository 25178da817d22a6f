package tests

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/egress/whep"
	"github.com/jetmedia/jetmedia/events"
	"github.com/jetmedia/jetmedia/pipeline/eventlog"
	"github.com/jetmedia/jetmedia/projections"
	"github.com/jetmedia/jetmedia/tests/rtcclient"
)

// TestWHEPViewerEndsWithoutTrackEndMarker: a WHEP viewer whose tracks leave the rooms bucket
// without the delete markers the node's track-ends watch listens for (here removed by a purge
// of the bucket's stream, which leaves none; after a kill, a marker the watch skipped or that
// expired before it read it) still ends, by the viewer node's recheck of the tracks its
// viewers play: peer.left "unpublished" within a few rechecks. Without the recheck the viewer
// stayed in the room, and in the log, for good (issue 13).
func TestWHEPViewerEndsWithoutTrackEndMarker(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a node and WebRTC peers")
	}
	node := startNode(t, nodeConfig(t, "recheck"))
	api := clientAPI(t)
	room := newRoom("recheck")
	ctx := ctxT(t, 90*time.Second)
	pub, err := rtcclient.Publish(ctx, api, node.HTTPURL(), room, asPublisher(t, room))
	require.NoError(t, err)
	defer pub.Close(false)
	viewer, err := rtcclient.Play(ctx, api, node.HTTPURL(), room, asViewer(t, room))
	require.NoError(t, err)
	defer viewer.Close()
	require.Eventually(t, func() bool { return viewer.Video.Load() > 30 && viewer.Audio.Load() > 30 },
		15*time.Second, 20*time.Millisecond, "the viewer plays")
	require.NoError(t, node.WaitProjected(ctx))
	r, err := projections.LoadRoom(ctx, node.Rooms(), room)
	require.NoError(t, err)
	require.Len(t, r.Tracks, 2)
	var viewerPeer string
	for id, p := range r.Peers {
		if p.Role == whep.Role {
			viewerPeer = id
		}
	}
	require.NotEmpty(t, viewerPeer)

	stream, err := node.JetStream().Stream(ctx, "KV_"+eventlog.BucketRooms)
	require.NoError(t, err)
	for _, id := range r.TrackIDs() {
		require.NoError(t, stream.Purge(ctx, jetstream.WithPurgeSubject("$KV."+eventlog.BucketRooms+"."+projections.TrackKey(room, id))))
	}
	removed := time.Now()
	ended := func() bool {
		for _, e := range roomEvents(t, node.JetStream(), room) {
			if p, err := e.Payload(); err == nil {
				if l, ok := p.(events.PeerLeft); ok && l.Peer == viewerPeer {
					require.Equal(t, events.ReasonUnpublished, l.Reason)
					return true
				}
			}
		}
		return false
	}
	require.Eventually(t, ended, 4*whep.RecheckEvery, 100*time.Millisecond,
		"the viewer of tracks gone from the bucket without a marker ended (peer.left in the log)")
	t.Logf("tracks removed without a marker -> the viewer's peer.left in the log: %.1f s (recheck every %v)",
		time.Since(removed).Seconds(), whep.RecheckEvery)
}
