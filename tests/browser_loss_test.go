package tests

import (
	"crypto/rand"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/cmd/jetmedia/app"
	"github.com/jetmedia/jetmedia/tests/browser"
	"github.com/jetmedia/jetmedia/tests/netimpair"
)

// TestBrowserLossRepaired: a Chromium WHEP viewer behind a relay that loses 5 % of the
// node's datagrams keeps decoding, and loss repair works end to end: Chromium's NACK count
// and its count of retransmitted packets received (the node's RTX stream) both grow, as do
// the node's own NACK and RTX counters. Frame rate, freezes and the counters are logged
// (docs/benchmarks.md); the bounds are liveness.
func TestBrowserLossRepaired(t *testing.T) {
	chromium := browser.RequireChromium(t)
	node := startDevNode(t, "browser-loss", func(c *app.Config) { c.UDPHost = "127.0.0.1" })
	relay, viewerURL := relayed(t, node)
	b := browser.Start(t, chromium)
	room := "loss-" + strings.ToLower(rand.Text()[:10])
	publisher := b.Open(t, node.HTTPURL()+"/?"+url.Values{"room": {room}, "auto": {"publish"}, "codec": {"VP8"},
		"video": {"1280x720"}}.Encode())
	var viewer *browser.Tab
	diagnose := func() string {
		var sb strings.Builder
		fmt.Fprintf(&sb, "\nnode forwarding %+v; relay down %+v", node.Forwarding(), relay.Down())
		for name, tab := range map[string]*browser.Tab{"publisher": publisher, "viewer": viewer} {
			if tab == nil {
				continue
			}
			st, err := tab.Stats()
			fmt.Fprintf(&sb, "\n--- %s\nstatus: %s\nstats: %+v (err %v)\nconsole:\n%s\n", name, tab.Text("status"), st, err, tabConsole(tab))
		}
		return sb.String()
	}
	waitStats(t, publisher, "the publisher sends", 30*time.Second, func(s browser.PageStats) bool {
		return s.State == "publishing" && s.FramesSent > 0
	}, diagnose)
	viewer = b.Open(t, viewerURL+"/?"+url.Values{"room": {room}, "auto": {"play"}}.Encode())
	before := waitStats(t, viewer, "the viewer decodes", 30*time.Second, func(s browser.PageStats) bool {
		return s.FramesDecoded > 30
	}, diagnose)
	// 3 s without loss: the frame rate to compare with.
	time.Sleep(3 * time.Second)
	clean := waitStats(t, viewer, "the viewer decodes without loss", 10*time.Second, func(s browser.PageStats) bool {
		return s.FramesDecoded > before.FramesDecoded
	}, diagnose)
	cleanFPS := float64(clean.FramesDecoded-before.FramesDecoded) / 3
	before = clean

	relay.SetDown(netimpair.Link{Loss: 0.05})
	lossy, fwd, down := time.Now(), node.Forwarding(), relay.Down()
	after := waitStats(t, viewer, "NACKs answered with retransmissions", 30*time.Second, func(s browser.PageStats) bool {
		return s.NACKCount > before.NACKCount+10 && s.Retransmitted > before.Retransmitted+10
	}, diagnose)
	repaired := time.Since(lossy)
	// 10 s of loss in all, then what the viewer saw over it.
	time.Sleep(10*time.Second - repaired)
	after = waitStats(t, viewer, "the viewer keeps decoding under loss", 10*time.Second, func(s browser.PageStats) bool {
		return s.FramesDecoded > after.FramesDecoded
	}, diagnose)
	el := time.Since(lossy).Seconds()
	f, d := node.Forwarding(), relay.Down()
	t.Logf("5%% loss for %.1f s (%d of %d datagrams dropped): %.1f fps decoded (%.1f without loss), %d freezes %.2f s, "+
		"viewer NACKs %d, retransmitted received %d, PLIs %d, packets lost %d; node NACKed %d, resent %d (%d on RTX); first repairs after %v",
		el, d.Lost-down.Lost, d.Passed+d.Lost-down.Passed-down.Lost, float64(after.FramesDecoded-before.FramesDecoded)/el,
		cleanFPS, after.FreezeCount-before.FreezeCount, after.TotalFreezesDuration-before.TotalFreezesDuration,
		after.NACKCount-before.NACKCount, after.Retransmitted-before.Retransmitted, after.PLICount-before.PLICount,
		after.PacketsLost-before.PacketsLost, f.NACKed-fwd.NACKed, f.Retransmitted-fwd.Retransmitted,
		f.RetransmittedRTX-fwd.RetransmittedRTX, repaired.Round(100*time.Millisecond))
	require.Greater(t, after.FramesDecoded-before.FramesDecoded, int(5*el), "frames keep decoding under loss")
	require.Positive(t, f.RetransmittedRTX-fwd.RetransmittedRTX, "the node resends on the viewer's RTX stream")
}
