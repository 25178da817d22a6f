package tests

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/cmd/jetmedia/app"
	"github.com/jetmedia/jetmedia/events"
	"github.com/jetmedia/jetmedia/pipeline/eventlog"
	"github.com/jetmedia/jetmedia/projections"
	"github.com/jetmedia/jetmedia/tests/rtcclient"
)

// TestPublishToThreeViewers: a pion publisher and three pion viewers through one node. Every
// viewer receives audio and video; the log holds the expected events in order; the KV state
// equals the fold of the log; after the publisher leaves the state shows it gone; a rebuilt
// projection equals the live one; every event validates against its schema.
func TestPublishToThreeViewers(t *testing.T) {
	node := startNode(t, nodeConfig(t, "solo"))
	api := clientAPI(t)
	room := newRoom("three")
	ctx := ctxT(t, 60*time.Second)

	pub, err := rtcclient.Publish(ctx, api, node.HTTPURL(), room, asPublisher(t, room))
	require.NoError(t, err)
	defer pub.Close(true)

	viewers := make([]*rtcclient.Viewer, 3)
	for i := range viewers {
		viewers[i], err = rtcclient.Play(ctx, api, node.HTTPURL(), room, asViewer(t, room))
		require.NoError(t, err)
		// Play answers as soon as one track is known; wait for both before the next viewer
		// so every viewer gets audio and video.
		if i == 0 {
			require.Eventually(t, func() bool {
				r, err := projections.LoadRoom(ctx, node.Rooms(), room)
				return err == nil && len(r.Tracks) == 2
			}, 10*time.Second, 20*time.Millisecond)
			require.NoError(t, viewers[0].Close())
			viewers[0], err = rtcclient.Play(ctx, api, node.HTTPURL(), room, asViewer(t, room))
			require.NoError(t, err)
		}
	}
	for i, v := range viewers {
		require.Eventually(t, func() bool { return v.Video.Load() > 30 && v.Audio.Load() > 30 },
			15*time.Second, 20*time.Millisecond, "viewer %d got video %d audio %d", i, v.Video.Load(), v.Audio.Load())
	}
	require.Positive(t, pub.PLIs.Load(), "a new viewer's keyframe request reaches the publisher")

	// A NACK is answered by the viewer's node from its per-track packet cache (the viewer's
	// SRTP then drops the copy as a replay, since the original was not really lost).
	rtxBefore := node.Forwarding().Retransmitted
	_, err = viewers[1].NACKLastVideo()
	require.NoError(t, err)
	require.Eventually(t, func() bool { return node.Forwarding().Retransmitted > rtxBefore },
		5*time.Second, 10*time.Millisecond, "the NACKed packet is resent from the cache")

	require.NoError(t, node.WaitProjected(ctx))
	live, err := projections.LoadRoom(ctx, node.Rooms(), room)
	require.NoError(t, err)
	require.Len(t, live.Peers, 4)
	require.Len(t, live.Tracks, 2)
	require.Len(t, live.Subs, 6)

	log := roomEvents(t, node.JetStream(), room)
	folded, err := projections.FoldAll(room, log)
	require.NoError(t, err)
	requireSameRoom(t, folded, live)
	require.Equal(t, events.TypeRoomCreated, log[0].Type)
	require.Equal(t, events.TypePeerJoined, log[1].Type)
	require.Equal(t, publisherIdentity, log[1].Actor, "the token's identity is the actor")
	joined, err := log[1].Payload()
	require.NoError(t, err)
	require.Equal(t, pubPeer(t, log), joined.(events.PeerJoined).Peer)
	require.Equal(t, publisherIdentity, joined.(events.PeerJoined).Identity)
	published := 0
	for _, e := range log {
		if e.Type == events.TypeTrackPublished {
			published++
		}
	}
	require.Equal(t, 2, published)

	// The publisher leaves: its peer, tracks and the subscriptions to them are gone, and so
	// are the WHEP viewers, which play nothing any more (peer.left "unpublished").
	require.NoError(t, pub.Close(true))
	require.NoError(t, node.WaitProjected(ctx))
	require.Eventually(t, func() bool {
		r, err := projections.LoadRoom(ctx, node.Rooms(), room)
		return err == nil && len(r.Tracks) == 0 && len(r.Subs) == 0 && len(r.Peers) == 0
	}, 5*time.Second, 20*time.Millisecond)
	for _, v := range viewers {
		_ = v.Close() // the server ended the session: its DELETE finds none
	}
	require.NoError(t, node.WaitProjected(ctx))
	log = roomEvents(t, node.JetStream(), room)
	last := log[len(log)-1]
	require.Equal(t, events.TypePeerLeft, last.Type)
	lp, err := last.Payload()
	require.NoError(t, err)
	require.Equal(t, events.ReasonUnpublished, lp.(events.PeerLeft).Reason)
	live, err = projections.LoadRoom(ctx, node.Rooms(), room)
	require.NoError(t, err)
	require.Empty(t, live.Peers)
	folded, err = projections.FoldAll(room, log)
	require.NoError(t, err)
	requireSameRoom(t, folded, live)

	// Rebuilding the projection from the log gives the live bucket byte for byte.
	requireRebuildEqual(t, node)
	require.Positive(t, requireSchemaValid(t, node.JetStream()))
}

func pubPeer(t *testing.T, log []events.Envelope) string {
	for _, e := range log {
		if e.Type == events.TypePeerJoined {
			p, err := e.Payload()
			require.NoError(t, err)
			if p.(events.PeerJoined).Role == "publisher" {
				return p.(events.PeerJoined).Peer
			}
		}
	}
	t.Fatal("no publisher joined")
	return ""
}

func requireSameRoom(t *testing.T, want, got projections.Room) {
	t.Helper()
	we, err := projections.Entries(want)
	require.NoError(t, err)
	ge, err := projections.Entries(got)
	require.NoError(t, err)
	require.Equal(t, stringify(we), stringify(ge))
}

func stringify(m map[string][]byte) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = string(v)
	}
	return out
}

func requireRebuildEqual(t *testing.T, node *app.Node) {
	t.Helper()
	ctx := ctxT(t, 30*time.Second)
	require.NoError(t, node.WaitProjected(ctx))
	n, err := projections.Rebuild(ctx, node.JetStream(), "rooms-rebuild", eventlog.StorageConfig{})
	require.NoError(t, err)
	require.Positive(t, n)
	rebuilt, err := node.JetStream().KeyValue(ctx, "rooms-rebuild")
	require.NoError(t, err)
	want, err := projections.Snapshot(ctx, node.Rooms())
	require.NoError(t, err)
	got, err := projections.Snapshot(ctx, rebuilt)
	require.NoError(t, err)
	require.Equal(t, stringify(want), stringify(got))
}
