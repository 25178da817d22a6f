package tests

import (
	"crypto/rand"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/tests/browser"
)

// TestBrowserSimulcast publishes Chromium's fake camera in three simulcast layers (q, h, f)
// over WHIP from the demo page, in VP8 and in H.264, and plays each layer in a WHEP viewer
// tab: every viewer decodes, each at its layer's width. Then the low layer's viewer switches
// to the top layer mid-stream and keeps decoding at the new width without losing a packet
// (the node moves it at a key frame, with continuous sequence numbers).
func TestBrowserSimulcast(t *testing.T) {
	chromium := browser.RequireChromium(t)
	for _, codec := range []string{"VP8", "H264"} {
		t.Run(codec, func(t *testing.T) { testBrowserSimulcast(t, chromium, codec) })
	}
}

func testBrowserSimulcast(t *testing.T, chromium, codec string) {
	node := startDevNode(t, "simulcast-"+strings.ToLower(codec), nil)
	b := browser.Start(t, chromium)
	room := "simulcast-" + strings.ToLower(rand.Text()[:10])
	page := func(q url.Values) string {
		q.Set("room", room)
		return node.HTTPURL() + "/?" + q.Encode()
	}
	publisher := b.Open(t, page(url.Values{"auto": {"publish"}, "simulcast": {"1"}, "codec": {codec}, "video": {"640x360"}}))
	layers := []string{"q", "h", "f"}
	viewers := map[string]*browser.Tab{}
	diagnose := func() string {
		var sb strings.Builder
		tabs := map[string]*browser.Tab{"publisher": publisher}
		for l, v := range viewers {
			tabs["viewer "+l] = v
		}
		for name, tab := range tabs {
			st, err := tab.Stats()
			fmt.Fprintf(&sb, "\n--- %s\nstatus: %s\nstats: %+v (err %v)\nconsole:\n%s\n", name, tab.Text("status"), st, err, tabConsole(tab))
		}
		return sb.String()
	}
	wait := func(tab *browser.Tab, what string, timeout time.Duration, ok func(browser.PageStats) bool) browser.PageStats {
		t.Helper()
		return waitStats(t, tab, what, timeout, ok, diagnose)
	}
	pub := wait(publisher, "the publisher sends three layers", 30*time.Second, func(s browser.PageStats) bool {
		return s.State == "publishing" && s.LayersSent == 3
	})
	t.Logf("publisher: %+v", pub)

	width := map[string]int{}
	for _, l := range layers {
		viewers[l] = b.Open(t, page(url.Values{"auto": {"play"}, "layer": {l}}))
	}
	for _, l := range layers {
		var first int
		st := wait(viewers[l], "viewer of layer "+l+" decodes", 30*time.Second, func(s browser.PageStats) bool {
			if first == 0 && s.FramesDecoded > 0 {
				first = s.FramesDecoded
			}
			return first > 0 && s.FramesDecoded > first+10 && s.FrameWidth > 0
		})
		require.Contains(t, strings.ToLower(st.Codec), strings.ToLower(codec), "viewer of %s plays the published codec", l)
		width[l] = st.FrameWidth
		t.Logf("viewer of layer %s: %+v", l, st)
	}
	require.Less(t, width["q"], width["h"], "the low layer is narrower than the middle one%s", diagnose())
	require.Less(t, width["h"], width["f"], "the middle layer is narrower than the top one%s", diagnose())

	// Switch the low layer's viewer to the top layer mid-stream.
	low := viewers["q"]
	before := wait(low, "low viewer still decoding", 10*time.Second, func(browser.PageStats) bool { return true })
	pubBefore := wait(publisher, "publisher stats", 10*time.Second, func(browser.PageStats) bool { return true })
	midBefore := wait(viewers["h"], "middle viewer stats", 10*time.Second, func(browser.PageStats) bool { return true })
	_, err := browser.Eval[any](low, 5*time.Second, `window.jetmedia.setLayer("f").then(() => true)`)
	require.NoError(t, err)
	after := wait(low, "the switched viewer decodes the top layer", 20*time.Second, func(s browser.PageStats) bool {
		return s.FrameWidth == width["f"] && s.FramesDecoded > before.FramesDecoded+10
	})
	t.Logf("switched viewer: before %+v, after %+v", before, after)
	// The switch asked the top layer alone for a key frame: the middle layer got no PLI but
	// those its own viewer sent.
	pubAfter := wait(publisher, "publisher stats", 10*time.Second, func(browser.PageStats) bool { return true })
	midAfter := wait(viewers["h"], "middle viewer stats", 10*time.Second, func(browser.PageStats) bool { return true })
	t.Logf("publisher's PLIs by layer: before the switch %v, after %v; the middle viewer sent %d", pubBefore.PLIsByLayer, pubAfter.PLIsByLayer, midAfter.PLICount-midBefore.PLICount)
	require.Greater(t, pubAfter.PLIsByLayer["f"], pubBefore.PLIsByLayer["f"], "the switch asked the top layer for a key frame")
	require.LessOrEqual(t, pubAfter.PLIsByLayer["h"]-pubBefore.PLIsByLayer["h"], midAfter.PLICount-midBefore.PLICount,
		"a PLI reached the middle layer that its viewer did not send: the switch asked every layer")
	require.Equal(t, before.PacketsLost, after.PacketsLost, "no sequence gap at the switch (packetsLost unchanged)")
	final := wait(low, "the switched viewer keeps decoding", 10*time.Second, func(s browser.PageStats) bool {
		return s.FramesDecoded > after.FramesDecoded+10
	})
	require.Equal(t, width["f"], final.FrameWidth)
}
