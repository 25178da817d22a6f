package tests

import (
	"crypto/rand"
	"fmt"
	"net/url"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/tests/browser"
)

// firstFrame is the demo page's window.jetmedia.firstFrame(): ms to the first shown frame.
type firstFrame struct {
	FromPost      float64  `json:"fromPost"`
	FromConnected *float64 `json:"fromConnected"`
}

// TestBrowserFirstFrame: a Chromium WHEP viewer (the demo page) starts playing a Chromium
// publisher's room again and again; each time the page notes when it posted its offer, when
// its transport connected (ICE and DTLS done) and when its first video frame was shown
// (requestVideoFrameCallback). Every play shows a frame; the times are logged as figures
// (issue 14: POST -> first decoded frame in Chromium), never asserted.
func TestBrowserFirstFrame(t *testing.T) {
	chromium := browser.RequireChromium(t)
	node := startDevNode(t, "browser-first-frame", nil)
	b := browser.Start(t, chromium)
	room := "first-frame-" + strings.ToLower(rand.Text()[:10])
	publisher := b.Open(t, node.HTTPURL()+"/?"+url.Values{"room": {room}, "auto": {"publish"}, "codec": {"VP8"},
		"video": {"640x360"}}.Encode())
	waitStats(t, publisher, "the publisher sends", 30*time.Second, func(s browser.PageStats) bool {
		return s.State == "publishing" && s.FramesSent > 0
	}, func() string { return tabConsole(publisher) })

	viewer := b.Open(t, node.HTTPURL()+"/?"+url.Values{"room": {room}}.Encode())
	const plays = 8
	var fromPost, fromConnected []float64
	for i := range plays {
		require.NoError(t, viewer.Click("play"))
		var ff *firstFrame
		require.Eventually(t, func() bool {
			ff, _ = browser.Eval[*firstFrame](viewer, 5*time.Second, `window.jetmedia.firstFrame()`)
			return ff != nil
		}, 20*time.Second, 20*time.Millisecond, "play %d: no frame shown; status %s\nconsole:\n%s", i, viewer.Text("status"), tabConsole(viewer))
		fromPost = append(fromPost, ff.FromPost)
		if ff.FromConnected != nil {
			fromConnected = append(fromConnected, *ff.FromConnected)
		}
		require.NoError(t, viewer.Click("stop-play"))
		require.Eventually(t, func() bool {
			ff, _ = browser.Eval[*firstFrame](viewer, 5*time.Second, `window.jetmedia.firstFrame()`)
			return ff == nil
		}, 10*time.Second, 20*time.Millisecond)
	}
	// Chromium may dispatch connectionstatechange after the first frame's callback (a CI run
	// saw -2.5 ms and one play without it): the connected figure is logged for the plays that
	// have it, never asserted.
	connected := "none noted"
	if len(fromConnected) > 0 {
		connected = summary(fromConnected)
	}
	t.Logf("Chromium WHEP viewer, %d plays of a 640x360 VP8 Chromium publisher (load %s): POST -> first shown frame %s; ICE+DTLS connected -> first shown frame (%d plays) %s",
		plays, loadAverage(), summary(fromPost), len(fromConnected), connected)
}

// summary is "p50 X ms, max Y ms" of ms.
func summary(ms []float64) string {
	s := slices.Clone(ms)
	slices.Sort(s)
	return fmt.Sprintf("p50 %.1f ms, max %.1f ms (all: %.0f)", s[len(s)/2], s[len(s)-1], s)
}

// loadAverage is the machine's 1-minute load average ("?" where /proc has none): timing
// figures depend on it.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return "?"
	}
	return f[0]
}
