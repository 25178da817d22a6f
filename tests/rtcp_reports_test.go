package tests

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"
	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/tests/rtcclient"
)

// The node's receiver reports to a publisher echo the publisher's sender reports (LSR and
// DLSR, RFC 3550 6.4.1), so the publisher can measure its round-trip time to the node: a
// browser's send-side estimator and its NACK timing use that figure.
func TestReceiverReportsEchoSenderReports(t *testing.T) {
	node := startNode(t, nodeConfig(t, "rr"))
	room := newRoom("rr")
	ctx := ctxT(t, 60*time.Second)

	video, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, "video", "pub")
	require.NoError(t, err)
	audio, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, "audio", "pub")
	require.NoError(t, err)

	var mu sync.Mutex
	reports, echoed := 0, 0
	onRTCP := func(_ int, pkts []rtcp.Packet) {
		mu.Lock()
		defer mu.Unlock()
		for _, p := range pkts {
			rr, ok := p.(*rtcp.ReceiverReport)
			if !ok {
				continue
			}
			for _, r := range rr.Reports {
				reports++
				if r.LastSenderReport != 0 {
					echoed++
				}
			}
		}
	}
	s, err := rtcclient.StartWHIP(ctx, clientAPI(t), node.HTTPURL()+"/whip/"+room, []webrtc.TrackLocal{video, audio}, onRTCP, asPublisher(t, room))
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close(true) })
	run, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { sendAt(run, video, audio, 300_000, nil) })
	t.Cleanup(func() { cancel(); wg.Wait() })

	// pion's publisher sends a sender report a second and the node a receiver report a second:
	// within a few seconds a report must carry the publisher's last one.
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return echoed > 0
	}, 20*time.Second, 100*time.Millisecond, "no receiver report echoed a sender report")
	mu.Lock()
	t.Logf("receiver report blocks: %d, echoing a sender report: %d", reports, echoed)
	mu.Unlock()
}
