package tests

import (
	"context"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/pion/interceptor"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/events"
	"github.com/jetmedia/jetmedia/ingress/signal/client"
	"github.com/jetmedia/jetmedia/pipeline/audiolevel"
	"github.com/jetmedia/jetmedia/pipeline/auth"
	"github.com/jetmedia/jetmedia/pipeline/mediabus"
	"github.com/jetmedia/jetmedia/pipeline/rtc"
	"github.com/jetmedia/jetmedia/tests/rtcclient"
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

// TestWHIPSpeakerChanged: a WHIP publisher (pion, sending audio levels as browsers do) talks
// for 1.5 s and then is silent: the node records speaker.changed speaking, then, after the
// hold, not speaking, under the publisher's peer; and its level reports reach lv.<room>.
func TestWHIPSpeakerChanged(t *testing.T) {
	node := startNode(t, nodeConfig(t, "whip-speaker"))
	ctx := ctxT(t, 60*time.Second)
	room := newRoom("whip-speak")

	nc, err := node.Server().Connect("level-watch")
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	var reports, speaking atomic.Int64
	sub, err := nc.Subscribe(mediabus.LevelSubject(room), func(m *nats.Msg) {
		r, err := audiolevel.ParseReport(m.Data)
		if err != nil {
			return
		}
		reports.Add(1)
		if r.Speaking {
			speaking.Add(1)
		}
	})
	require.NoError(t, err)
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	require.NoError(t, nc.Flush())

	pc, err := levelAPI(t).NewPeerConnection(webrtc.Configuration{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = pc.Close() })
	track, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, "audio", "whip")
	require.NoError(t, err)
	tx, err := pc.AddTransceiverFromTrack(track, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
	require.NoError(t, err)
	_, err = rtcclient.Exchange(ctx, http.DefaultClient, pc, node.HTTPURL()+"/whip/"+room, token(t, room, publisherIdentity, auth.Publish))
	require.NoError(t, err)
	require.NotZero(t, rtc.AudioLevelID(tx.Sender().GetParameters().RTPParameters), "the node's answer accepts the audio-level extension")
	start := time.Now()
	sctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		sendOpusLevels(sctx, track, tx.Sender(), func() uint8 {
			if time.Since(start) < 1500*time.Millisecond {
				return 25
			}
			return audiolevel.Silence
		})
	}()
	t.Cleanup(func() { cancel(); <-done })

	var changes []events.SpeakerChanged
	var peer string
	require.Eventually(t, func() bool {
		changes = changes[:0]
		for _, e := range roomEvents(t, node.JetStream(), room) {
			pl, err := e.Payload()
			require.NoError(t, err)
			switch p := pl.(type) {
			case events.PeerJoined:
				peer = p.Peer
			case events.SpeakerChanged:
				changes = append(changes, p)
			}
		}
		return len(changes) >= 2
	}, 20*time.Second, 100*time.Millisecond, "speaker.changed on and off")
	require.Len(t, changes, 2)
	require.Equal(t, peer, changes[0].Peer)
	require.True(t, changes[0].Speaking)
	require.LessOrEqual(t, changes[0].Level, uint8(45))
	require.False(t, changes[1].Speaking)
	require.Positive(t, speaking.Load(), "speaking level reports on lv.<room>")
	t.Logf("level reports seen: %d (%d speaking)", reports.Load(), speaking.Load())
}
