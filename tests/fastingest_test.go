package tests

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"
	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/ingress/signal/client"
	"github.com/jetmedia/jetmedia/projections"
	"github.com/jetmedia/jetmedia/tests/rtcclient"
)

// TestWHIPFastIngest: with --fast-ingest a pion WHIP publisher's RTP is taken off the edge's
// socket by the node itself, and everything pion did on that path still happens: a WHEP
// viewer (on the fast egress path, --fast-egress) plays audio and video, the publisher gets receiver reports that echo its sender
// reports, and when it leaves its session and tracks end.
func TestWHIPFastIngest(t *testing.T) {
	cfg := nodeConfig(t, "fast")
	cfg.FastIngest, cfg.FastEgress = true, true
	node := startNode(t, cfg)
	room := newRoom("fast")
	ctx := ctxT(t, 60*time.Second)
	api := clientAPI(t)

	video, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, "video", "pub")
	require.NoError(t, err)
	audio, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, "audio", "pub")
	require.NoError(t, err)
	var mu sync.Mutex
	echoed := 0
	onRTCP := func(_ int, pkts []rtcp.Packet) {
		mu.Lock()
		defer mu.Unlock()
		for _, p := range pkts {
			if rr, ok := p.(*rtcp.ReceiverReport); ok {
				for _, r := range rr.Reports {
					if r.LastSenderReport != 0 {
						echoed++
					}
				}
			}
		}
	}
	pub, err := rtcclient.StartWHIP(ctx, api, node.HTTPURL()+"/whip/"+room, []webrtc.TrackLocal{video, audio}, onRTCP, asPublisher(t, room))
	require.NoError(t, err)
	t.Cleanup(func() { _ = pub.Close(true) })
	run, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { sendAt(run, video, audio, 500_000, nil) })
	t.Cleanup(func() { cancel(); wg.Wait() })

	require.Eventually(t, func() bool {
		r, err := projections.LoadRoom(ctx, node.Rooms(), room)
		return err == nil && len(r.Tracks) == 2
	}, 10*time.Second, 20*time.Millisecond)
	viewer, err := rtcclient.Play(ctx, api, node.HTTPURL(), room, asViewer(t, room))
	require.NoError(t, err)
	t.Cleanup(func() { _ = viewer.Close() })
	require.Eventually(t, func() bool { return viewer.Video.Load() > 100 && viewer.Audio.Load() > 30 },
		15*time.Second, 20*time.Millisecond, "viewer got video %d audio %d", viewer.Video.Load(), viewer.Audio.Load())
	fast := node.FastIngest()
	require.Greater(t, fast.Packets, uint64(100), "the fast path carried the media: %+v", fast)
	require.Zero(t, fast.Refused)
	out := node.FastEgress()
	require.Greater(t, out.Packets, uint64(130), "the fast egress path carried the viewer's media: %+v", out)
	require.Zero(t, out.Failed)
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return echoed > 0
	}, 20*time.Second, 100*time.Millisecond, "no receiver report echoed a sender report")

	// The publisher leaves: its tracks end, and the fast path carries nothing more.
	cancel()
	wg.Wait()
	require.NoError(t, pub.Close(true))
	require.Eventually(t, func() bool {
		r, err := projections.LoadRoom(ctx, node.Rooms(), room)
		return err == nil && len(r.Tracks) == 0
	}, 10*time.Second, 20*time.Millisecond)
	require.Eventually(t, func() bool { return node.Sessions("whip") == 0 }, 10*time.Second, 20*time.Millisecond)
}

// TestSDKRoomFastIngest: room SDK publishers through a --fast-ingest --fast-egress node:
// each peer receives the other's track carried by both fast paths; a peer that leaves is seen leaving
// with its track.
func TestSDKRoomFastIngest(t *testing.T) {
	cfg := nodeConfig(t, "sdkfast")
	cfg.FastIngest, cfg.FastEgress = true, true
	node := startNode(t, cfg)
	room := newRoom("sdkfast")
	ctx := ctxT(t, 60*time.Second)

	a := joinSDK(t, ctx, node, room, "alice", true)
	b := joinSDK(t, ctx, node, room, "bob", true)
	ids := []string{a.room.Self.Peer, b.room.Self.Peer}
	require.Eventually(t, func() bool { return a.received(ids[1]) > 60 && b.received(ids[0]) > 60 },
		20*time.Second, 20*time.Millisecond, "alice got %d, bob got %d", a.received(ids[1]), b.received(ids[0]))
	fast := node.FastIngest()
	require.Greater(t, fast.Packets, uint64(100), "the fast path carried the media: %+v", fast)
	require.Zero(t, fast.Refused)
	out := node.FastEgress()
	require.Greater(t, out.Packets, uint64(120), "the fast egress path carried the subscribers' media: %+v", out)
	require.Zero(t, out.Failed)

	a.stopSend()
	require.NoError(t, a.room.Leave())
	require.Eventually(t, func() bool {
		left, unpub := b.seen(client.PeerLeft), b.seen(client.TrackUnpublished)
		return len(left) == 1 && left[0].Peer.Peer == ids[0] && len(unpub) == 1
	}, 5*time.Second, 10*time.Millisecond)
	b.stopSend()
	require.NoError(t, b.room.Leave())
	require.Eventually(t, func() bool { return node.Sessions("sdk") == 0 }, 10*time.Second, 20*time.Millisecond)
}
