package tests

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/tests/loadgen"
)

// TestFirstPacketIsKeyframe: a WHEP viewer's first video packet is the first packet of a key
// frame (its first frame is decodable), for pion PeerConnection viewers and lite ones, and it
// comes once the viewer's DTLS is done (before, pion drops what is written). Viewers join
// one after another, so that some find the track's newest key frame in the node's cache and
// are sent it at once, and the others wait for the one their join asked for. The first-frame
// times are logged, not asserted (docs/benchmarks.md has the figures).
func TestFirstPacketIsKeyframe(t *testing.T) {
	for _, viewer := range []string{loadgen.ViewerPion, loadgen.ViewerLite} {
		t.Run(viewer, func(t *testing.T) {
			node := startLoadNode(t, "first-frame-"+viewer)
			cfg := loadgen.Defaults()
			cfg.URL, cfg.Viewer = node.HTTPURL(), viewer
			cfg.Subscribers = 8
			cfg.Ramp = 2 * time.Second
			cfg.Duration = 3 * time.Second
			rep, err := loadgen.Run(ctxT(t, 120*time.Second), cfg)
			require.NoError(t, err)
			require.Equal(t, 8, rep.SubscribersJoined)
			require.Zero(t, rep.SubscribersNoMedia, rep.FirstError)
			t.Logf("first key-frame packet: after the POST p50 %.1f ms max %.1f ms; after ICE+DTLS p50 %.1f ms max %.1f ms; replayed from the cache: %d packets",
				rep.FirstKeyframe.P50, rep.FirstKeyframe.Max, rep.KeyframeAfterConnect.P50, rep.KeyframeAfterConnect.Max,
				node.Forwarding().Replayed)
			require.Equal(t, uint64(8), rep.FirstKeyframe.Count, "every viewer got a key frame")
			require.Equal(t, uint64(8), rep.KeyframeAfterConnect.Count)
			// The first video packet and the first key-frame packet are one packet for every
			// viewer: the two sorted lists of times are the same.
			require.Equal(t, rep.Join, rep.FirstKeyframe, "a viewer's first video packet starts a key frame")
		})
	}
}
