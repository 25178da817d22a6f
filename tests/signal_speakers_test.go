package tests

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/events"
	"github.com/jetmedia/jetmedia/ingress/signal/client"
	"github.com/jetmedia/jetmedia/pipeline/audiolevel"
	"github.com/jetmedia/jetmedia/pipeline/auth"
	"github.com/jetmedia/jetmedia/pipeline/rtc"
)

// levelAPI is a pion API that sends the audio-level header extension, as browsers do.
func levelAPI(t *testing.T) *webrtc.API {
	t.Helper()
	me := &webrtc.MediaEngine{}
	require.NoError(t, me.RegisterDefaultCodecs())
	require.NoError(t, me.RegisterHeaderExtension(webrtc.RTPHeaderExtensionCapability{URI: audiolevel.URI}, webrtc.RTPCodecTypeAudio))
	ir := &interceptor.Registry{}
	require.NoError(t, webrtc.RegisterDefaultInterceptors(me, ir))
	return webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithInterceptorRegistry(ir))
}

// sendOpusLevels writes 20 ms Opus packets carrying level() in the negotiated audio-level
// extension until ctx ends.
func sendOpusLevels(ctx context.Context, track *webrtc.TrackLocalStaticRTP, sender *webrtc.RTPSender, level func() uint8) {
	tk := time.NewTicker(20 * time.Millisecond)
	defer tk.Stop()
	var seq uint16
	var ts uint32
	for {
		select {
		case <-ctx.Done():
			return
		case <-tk.C:
		}
		seq++
		ts += 960
		h := rtp.Header{Version: 2, SequenceNumber: seq, Timestamp: ts}
		if id := rtc.AudioLevelID(sender.GetParameters().RTPParameters); id != 0 {
			_ = h.SetExtension(id, []byte{0x80 | level()})
		}
		_ = track.WriteRTP(&rtp.Packet{Header: h, Payload: []byte{0xf8, 0xff, 0xfe}}) // an Opus silence frame; the level is what counts
	}
}

// TestSDKSpeakers: Go SDK publishers sending Opus with audio levels (one at -127 dBov, one
// that starts talking at -20 dBov after a second and a half) and a Go SDK listener, on a node
// forwarding one audio track a room. The listener's Speakers event names the talker, the
// silent peer's packets stop reaching it, and the log has the talker's speaker.changed. How
// long the talker's first loud packet took to become the listener's Speakers event is logged.
func TestSDKSpeakers(t *testing.T) {
	cfg := nodeConfig(t, "sdk-speakers")
	cfg.MaxAudioStreams = 1
	node := startNode(t, cfg)
	ctx := ctxT(t, 90*time.Second)
	room := newRoom("sdk-speak")

	listener := joinSDKWith(t, ctx, node, room, "listener", client.Options{}, nil)
	var loudSince atomic.Int64 // unix ns of the talker's first loud packet
	publish := func(identity string, level func() uint8) *client.Room {
		r, err := client.Join(ctx, sdkURL(node), token(t, room, identity, auth.Publish, auth.Subscribe),
			client.Options{API: levelAPI(t), Trace: wire.trace})
		require.NoError(t, err)
		track, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, "audio", identity)
		require.NoError(t, err)
		sender, err := r.PublishWith(track, client.PublishOptions{Source: "mic"})
		require.NoError(t, err)
		sctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); sendOpusLevels(sctx, track, sender, level) }()
		t.Cleanup(func() { cancel(); <-done; _ = r.Close() })
		return r
	}
	silent := publish("silent", func() uint8 { return audiolevel.Silence })
	start := time.Now()
	talker := publish("talker", func() uint8 {
		if time.Since(start) < 1500*time.Millisecond {
			return audiolevel.Silence
		}
		loudSince.CompareAndSwap(0, time.Now().UnixNano())
		return 20
	})
	talkerID, silentID := talker.Self.Peer, silent.Self.Peer

	var first client.Event
	require.Eventually(t, func() bool {
		for _, e := range listener.seen(client.Speakers) {
			for _, s := range e.Speakers {
				require.NotEqual(t, silentID, s.Peer, "the silent peer is never a speaker")
			}
			if len(e.Speakers) > 0 && e.Speakers[0].Peer == talkerID {
				first = e
				return true
			}
		}
		return false
	}, 30*time.Second, 20*time.Millisecond, "the listener's Speakers event names the talker")
	t.Logf("talker's first loud packet -> listener's Speakers event: %v (level %d)",
		first.At.Sub(time.Unix(0, loudSince.Load())).Round(time.Millisecond), first.Speakers[0].Level)

	// Top-1: the silent peer's packets stop; the talker's keep coming.
	time.Sleep(500 * time.Millisecond)
	s0, k0 := listener.received(silentID), listener.received(talkerID)
	time.Sleep(2 * time.Second)
	s1, k1 := listener.received(silentID), listener.received(talkerID)
	t.Logf("listener's packets over 2 s: talker %d -> %d, silent %d -> %d", k0, k1, s0, s1)
	require.Greater(t, k1-k0, int64(50), "the talker's audio is forwarded")
	require.Equal(t, s0, s1, "the silent peer's audio is held back")

	var changes []events.SpeakerChanged
	for _, e := range roomEvents(t, node.JetStream(), room) {
		pl, err := e.Payload()
		require.NoError(t, err)
		if p, ok := pl.(events.SpeakerChanged); ok {
			changes = append(changes, p)
		}
	}
	require.Equal(t, []events.SpeakerChanged{{Peer: talkerID, Track: changes[0].Track, Speaking: true, Level: changes[0].Level}}, changes,
		"one speaker.changed for a talker who kept talking")
	require.Positive(t, wire.requireValid(t)["server.speakers"], "speakers messages validate against their schema")
}
