package tests

import (
	"crypto/rand"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/projections"
	"github.com/jetmedia/jetmedia/tests/browser"
)

// TestBrowserWHIPToWHEP publishes Chromium's fake camera through the demo page
// over WHIP and plays it back in a second tab over WHEP, end to end through a
// real node.
func TestBrowserWHIPToWHEP(t *testing.T) {
	chromium := browser.RequireChromium(t) // before the node: a skip costs nothing

	node := startDevNode(t, "browser", nil)
	b := browser.Start(t, chromium) // cleaned up before the node

	room := "browser-" + strings.ToLower(rand.Text()[:10])
	page := func(auto string) string {
		return node.HTTPURL() + "/?" + url.Values{"room": {room}, "auto": {auto}}.Encode()
	}
	publisher := b.Open(t, page("publish"))
	viewer := b.Open(t, page("play"))

	// diagnose reports what both pages saw, for failure messages.
	diagnose := func() string {
		var sb strings.Builder
		for _, p := range []struct {
			name string
			tab  *browser.Tab
		}{{"publisher", publisher}, {"viewer", viewer}} {
			stats, err := p.tab.Stats()
			fmt.Fprintf(&sb, "\n--- %s\nstatus: %s\nstats: %+v (err %v)\nconsole:\n%s\n",
				p.name, p.tab.Text("status"), stats, err, tabConsole(p.tab))
		}
		return sb.String()
	}

	var stats browser.PageStats
	deadline := time.Now().Add(30 * time.Second)
	for stats.FramesDecoded <= 10 {
		if time.Now().After(deadline) {
			t.Fatalf("viewer decoded %d frames in 30s, want > 10%s", stats.FramesDecoded, diagnose())
		}
		time.Sleep(250 * time.Millisecond)
		stats, _ = viewer.Stats() // not defined until the page's script ran
	}
	t.Logf("viewer: %+v", stats)

	pub, err := publisher.Stats()
	require.NoError(t, err)
	t.Logf("publisher: %+v", pub)
	if stats.State != "playing" || stats.BytesReceived <= 0 || pub.FramesSent <= 0 || pub.State != "publishing" {
		t.Fatalf("want viewer playing with bytes received and publisher publishing with frames sent%s", diagnose())
	}

	// Stop deletes the WHEP session; the page shows an error unless the
	// server answers the DELETE with a 2xx.
	require.NoError(t, viewer.Click("stop-play"))
	stopped := time.Now().Add(5 * time.Second)
	for viewer.Text("status") != "play stopped" {
		if time.Now().After(stopped) {
			t.Fatalf("Stop did not end the WHEP session cleanly%s", diagnose())
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The node runs in dev mode (no key configured): the page says so, and took its tokens
	// from /dev/token, so its identity is the actor of its events.
	dev, err := browser.Eval[bool](publisher, 5*time.Second, `!document.getElementById("dev-mode").hidden`)
	require.NoError(t, err)
	require.True(t, dev, "the page announces dev mode")
	require.True(t, node.DevMode())
	rooms, err := projections.LoadRoom(t.Context(), node.Rooms(), room)
	require.NoError(t, err)
	require.NotEmpty(t, rooms.Peers)
	for _, p := range rooms.Peers {
		require.True(t, strings.HasPrefix(p.Identity, "web-"), "peer %s has the page's identity, got %q", p.Peer, p.Identity)
	}
}
