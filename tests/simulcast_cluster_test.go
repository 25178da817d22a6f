package tests

import (
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/pipeline/auth"
	"github.com/jetmedia/jetmedia/pipeline/mediabus"
	"github.com/jetmedia/jetmedia/projections"
	"github.com/jetmedia/jetmedia/tests/browser"
)

// TestSimulcastTwoNodesPullOnlyWatchedLayer: Chromium publishes three simulcast layers on hub
// a; a Chromium viewer of the low layer on its leaf b makes b subscribe to that layer alone
// (a's NATS sees interest in md.<room>.<track>.q only; the messages that crossed the leaf
// connection are logged beside what a's publisher sent); switched to the top layer, b's interest moves there.
func TestSimulcastTwoNodesPullOnlyWatchedLayer(t *testing.T) {
	chromium := browser.RequireChromium(t)
	a, b := startLeafPair(t)
	br := browser.Start(t, chromium)
	room := newRoom("simulcast-pair")
	page := func(node interface{ HTTPURL() string }, q url.Values, grant auth.Grant) string {
		q.Set("room", room)
		q.Set("token", token(t, room, "web-"+string(grant), grant))
		return node.HTTPURL() + "/?" + q.Encode()
	}
	publisher := br.Open(t, page(a, url.Values{"auto": {"publish"}, "simulcast": {"1"}, "codec": {"VP8"}, "video": {"640x360"}}, auth.Publish))
	ctx := ctxT(t, 60*time.Second)
	var track projections.Track
	require.Eventually(t, func() bool {
		r, err := projections.LoadRoom(ctx, b.Rooms(), room)
		if err != nil {
			return false
		}
		for _, tr := range r.Tracks {
			if tr.Kind == "video" {
				track = tr
				return true
			}
		}
		return false
	}, 30*time.Second, 50*time.Millisecond, "b sees a's video track%s", tabConsole(publisher))
	require.Equal(t, []string{"q", "h", "f"}, track.Layers)

	viewer := br.Open(t, page(b, url.Values{"auto": {"play"}, "layer": {"q"}}, auth.Subscribe))
	decoding := func(what string, ok func(browser.PageStats) bool) browser.PageStats {
		t.Helper()
		var st browser.PageStats
		deadline := time.Now().Add(30 * time.Second)
		for {
			var err error
			st, err = viewer.Stats()
			if err == nil && ok(st) {
				return st
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within 30s (last %+v)\nviewer console:\n%s\npublisher console:\n%s", what, st, tabConsole(viewer), tabConsole(publisher))
			}
			time.Sleep(250 * time.Millisecond)
		}
	}
	st := decoding("the viewer on b decodes the low layer", func(s browser.PageStats) bool { return s.FramesDecoded > 20 && s.FrameWidth > 0 })
	lowWidth := st.FrameWidth

	interest := func() string {
		var on []string
		for _, l := range track.Layers {
			if a.Server().Interest(mediabus.MediaSubject(room, track.Track, l)) {
				on = append(on, l)
			}
		}
		return strings.Join(on, ",")
	}
	require.Equal(t, "q", interest(), "only the low layer is wanted from a")
	require.Equal(t, 2, b.ForwardedTracks(), "b subscribes to the audio and one video layer")

	crossed := func() uint64 {
		lz, err := a.Server().NATS().Leafz(&server.LeafzOptions{})
		require.NoError(t, err)
		var n uint64
		for _, l := range lz.Leafs {
			n += uint64(l.OutMsgs)
		}
		return n
	}
	sent0, cross0 := a.Media().Sent, crossed()
	time.Sleep(2 * time.Second)
	sent, cross := a.Media().Sent-sent0, crossed()-cross0
	t.Logf("2 s with the low layer watched on b: a's publisher sent %d RTP packets (all layers and audio), %d messages crossed to b", sent, cross)

	_, err := browser.Eval[any](viewer, 5*time.Second, `window.jetmedia.setLayer("f").then(() => true)`)
	require.NoError(t, err)
	st = decoding("the viewer on b decodes the top layer", func(s browser.PageStats) bool { return s.FrameWidth > lowWidth })
	require.Eventually(t, func() bool { return interest() == "f" }, 10*time.Second, 50*time.Millisecond,
		"after the switch only the top layer is wanted (now %q)", interest())
	t.Logf("switched: %+v", st)
}
