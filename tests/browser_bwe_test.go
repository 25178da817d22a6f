package tests

import (
	"crypto/rand"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/pipeline/rtc"
	"github.com/jetmedia/jetmedia/tests/browser"
)

// TestBrowserViewerFeedsBandwidthEstimate: a Chromium viewer negotiates transport-wide
// congestion control with the node, and its feedback moves the node's estimate of it away
// from the estimator's 1 Mbit/s start; the viewer keeps decoding.
func TestBrowserViewerFeedsBandwidthEstimate(t *testing.T) {
	chromium := browser.RequireChromium(t)
	node := startDevNode(t, "browser-bwe", nil)
	b := browser.Start(t, chromium)
	room := "bwe-" + strings.ToLower(rand.Text()[:10])
	page := func(auto string) string {
		return node.HTTPURL() + "/?" + url.Values{"room": {room}, "auto": {auto}}.Encode()
	}
	b.Open(t, page("publish"))
	viewer := b.Open(t, page("play"))

	var est rtc.Estimate
	require.Eventually(t, func() bool {
		all := node.Estimates().All()
		if len(all) != 1 {
			return false
		}
		est = all[0]
		return est.Bitrate != 1_000_000 && est.DelayBitrate > 0
	}, 30*time.Second, 250*time.Millisecond, "estimate of the Chromium viewer: %+v", node.Estimates().All())
	t.Logf("Chromium viewer's estimate: %+v", est)
	require.Eventually(t, func() bool {
		st, err := viewer.Stats()
		return err == nil && st.FramesDecoded > 10
	}, 30*time.Second, 250*time.Millisecond)
	t.Logf("video paused %d times (loopback: expected none)", node.Congestion().Pauses.Load())
}
