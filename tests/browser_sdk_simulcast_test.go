package tests

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/cmd/jetmedia/app"
	"github.com/jetmedia/jetmedia/tests/browser"
)

// sdkPeerStats is what the room page's window.jetmedia.stats() reports of one remote peer.
type sdkPeerStats struct {
	FramesDecoded int `json:"framesDecoded"`
	FrameWidth    int `json:"frameWidth"`
	PacketsLost   int `json:"packetsLost"`
}

// sdkPageStats is the room page's window.jetmedia.stats().
type sdkPageStats struct {
	State      string                  `json:"state"`
	FramesSent int                     `json:"framesSent"`
	LayersSent int                     `json:"layersSent"`
	Peers      map[string]sdkPeerStats `json:"peers"`
}

// TestBrowserSDKSimulcast: Chromium publishes its camera through the browser SDK (the room
// page, simulcast=1) in three layers, VP8 and H.264: the server's offer asks for the RIDs and
// Chromium's answer sends them. A WHEP viewer of the middle layer and an SDK viewer that
// calls setQuality decode each at its layer's width; the SDK viewer's switch from the low to
// the top layer loses no packet; back on automatic with a small rendered size it gets the low
// layer again.
func TestBrowserSDKSimulcast(t *testing.T) {
	chromium := browser.RequireChromium(t)
	for _, codec := range []string{"VP8", "H264"} {
		t.Run(codec, func(t *testing.T) { testBrowserSDKSimulcast(t, chromium, codec) })
	}
}

func testBrowserSDKSimulcast(t *testing.T, chromium, codec string) {
	node := startDevNode(t, "sdk-simulcast-"+strings.ToLower(codec), nil)
	b := browser.Start(t, chromium)
	room := newRoom("sdk-simulcast")
	pub := b.Open(t, node.HTTPURL()+"/room.html?"+url.Values{"room": {room}, "name": {"pub"}, "auto": {"join"},
		"simulcast": {"1"}, "codec": {codec}, "video": {"640x360"}}.Encode())
	stats := func(tab *browser.Tab) (sdkPageStats, error) {
		return browser.Eval[sdkPageStats](tab, 5*time.Second, `window.jetmedia.stats()`)
	}
	wait := func(what string, timeout time.Duration, ok func() bool, diag func() string) {
		t.Helper()
		deadline := time.Now().Add(timeout)
		for !ok() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within %s%s", what, timeout, diag())
			}
			time.Sleep(250 * time.Millisecond)
		}
	}
	var ps sdkPageStats
	wait("the SDK publisher sends three layers", 30*time.Second, func() bool {
		ps, _ = stats(pub)
		return ps.LayersSent == 3
	}, func() string {
		sdps, _ := browser.Eval[string](pub, 5*time.Second, `(() => { const pc = window.jetmedia.room?.peerConnection;
			return pc ? "offer:\n" + pc.remoteDescription?.sdp + "\nanswer:\n" + pc.localDescription?.sdp + "\nencodings: " +
				JSON.stringify(pc.getSenders().map((s) => s.getParameters().encodings)) : "no pc"; })()`)
		return fmt.Sprintf(" (last %+v)\nconsole:\n%s\n%s", ps, tabConsole(pub), sdps)
	})
	t.Logf("publisher: %+v", ps)

	whep := b.Open(t, node.HTTPURL()+"/?"+url.Values{"room": {room}, "auto": {"play"}, "layer": {"h"}}.Encode())
	var ws browser.PageStats
	wait("the WHEP viewer of layer h decodes", 30*time.Second, func() bool {
		ws, _ = whep.Stats()
		// The page asks for its layer once playing, so the first frames may be of another.
		return ws.FramesDecoded > 10 && ws.FrameWidth > 0 && ws.FrameWidth < sentWidth(pub, "f")
	}, func() string {
		return fmt.Sprintf(" (last %+v)\nconsole:\n%s\npublisher sends: %s\nroom: %s", ws, tabConsole(whep), sentCodecs(pub), roomState(node, room))
	})
	require.Contains(t, strings.ToLower(ws.Codec), strings.ToLower(codec))

	viewer := b.Open(t, node.HTTPURL()+"/room.html?"+url.Values{"room": {room}, "name": {"viewer"}, "auto": {"join"}, "video": {"160x120"}}.Encode())
	// The publisher's id, and its simulcast track's.
	type ids struct {
		Peer, Track string
		Layers      []string
	}
	var pid ids
	wait("the SDK viewer sees the simulcast track", 30*time.Second, func() bool {
		var err error
		pid, err = browser.Eval[ids](viewer, 5*time.Second, `(() => {
			const t = [...(window.jetmedia.room?.tracks.values() ?? [])].find((t) => (t.layers ?? []).length === 3);
			return t ? { Peer: t.peer, Track: t.track, Layers: t.layers } : { Peer: "", Track: "", Layers: [] };
		})()`)
		return err == nil && pid.Track != ""
	}, func() string { return "\nconsole:\n" + tabConsole(viewer) })
	require.Equal(t, []string{"q", "h", "f"}, pid.Layers)
	setQuality := func(q string) {
		_, err := browser.Eval[any](viewer, 5*time.Second, fmt.Sprintf(`window.jetmedia.room.setQuality(%q, %q)`, pid.Track, q))
		require.NoError(t, err)
	}
	peerStats := func() sdkPeerStats {
		s, _ := stats(viewer)
		return s.Peers[pid.Peer]
	}
	setQuality("q")
	var low sdkPeerStats
	wait("the SDK viewer decodes the low layer", 30*time.Second, func() bool {
		low = peerStats()
		return low.FramesDecoded > 10 && low.FrameWidth > 0 && low.FrameWidth < ws.FrameWidth
	}, func() string {
		return fmt.Sprintf(" (last %+v, WHEP h width %d)\nconsole:\n%s", low, ws.FrameWidth, tabConsole(viewer))
	})
	setQuality("f")
	var top sdkPeerStats
	wait("the SDK viewer switches to the top layer", 30*time.Second, func() bool {
		top = peerStats()
		return top.FrameWidth > ws.FrameWidth && top.FramesDecoded > low.FramesDecoded+10
	}, func() string {
		return fmt.Sprintf(" (last %+v; low %+v; WHEP h width %d)\npublisher sends: %s\nconsole:\n%s", top, low, ws.FrameWidth, sentCodecs(pub), tabConsole(viewer))
	})
	t.Logf("widths: low %d (SDK), middle %d (WHEP), top %d (SDK after the switch); packets lost %d -> %d",
		low.FrameWidth, ws.FrameWidth, top.FrameWidth, low.PacketsLost, top.PacketsLost)
	// A gap in the viewer's numbering at the switch would count as the distance between the
	// layers' sequence numbers (random, thousands on average); the rewriter's continuity is
	// checked to the packet in egress/forward. What Chromium counts here also holds real
	// loss: a CI run at load 22 lost 2 packets on loopback around the switch.
	require.LessOrEqual(t, top.PacketsLost-low.PacketsLost, 5, "no sequence gap at the switch")

	// Automatic again, for a small rendered size: the node picks the low layer. The page's own
	// size reports (its tiles' ResizeObserver) stop first, so that a late resize cannot win.
	_, err := browser.Eval[any](viewer, 5*time.Second, `document.querySelectorAll("video").forEach((v) => v.stopWatch?.()), true`)
	require.NoError(t, err)
	setQuality("")
	_, err = browser.Eval[any](viewer, 5*time.Second, fmt.Sprintf(`window.jetmedia.room.setViewSize(%q, 160, 90)`, pid.Track))
	require.NoError(t, err)
	var auto sdkPeerStats
	wait("the SDK viewer goes down to the low layer for a small element", 30*time.Second, func() bool {
		auto = peerStats()
		return auto.FrameWidth == low.FrameWidth && auto.FramesDecoded > top.FramesDecoded+10
	}, func() string { return fmt.Sprintf(" (last %+v)\nconsole:\n%s", auto, tabConsole(viewer)) })
}

// sentCodecs is what a page's peer connection sends, per encoding: RID, codec, encoder, frames.
func sentCodecs(tab *browser.Tab) string {
	out, err := browser.Eval[string](tab, 5*time.Second, `(async () => {
		const pc = window.jetmedia.room?.peerConnection;
		if (!pc) return "no pc";
		const r = await pc.getStats();
		const rows = [];
		r.forEach((s) => { if (s.type === "outbound-rtp" && s.kind === "video") {
			rows.push(s.rid + ":" + (r.get(s.codecId)?.mimeType ?? "?") + "/pt" + (r.get(s.codecId)?.payloadType ?? "?") + " " +
				s.encoderImplementation + " frames " + s.framesEncoded + " " + s.frameWidth + "x" + s.frameHeight); } });
		return rows.join(", ");
	})()`)
	if err != nil {
		return err.Error()
	}
	return out
}

// roomState is the room's entries in the node's rooms bucket, for failure messages.
func roomState(node *app.Node, room string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	keys, err := node.Rooms().ListKeys(ctx)
	if err != nil {
		return err.Error()
	}
	var b strings.Builder
	for k := range keys.Keys() {
		if !strings.Contains(k, room) {
			continue
		}
		if e, err := node.Rooms().Get(ctx, k); err == nil {
			fmt.Fprintf(&b, "\n  %s = %s", k, e.Value())
		}
	}
	return b.String()
}

// sentWidth is the frame width a page's peer connection sends on the encoding rid (0 unknown).
func sentWidth(tab *browser.Tab, rid string) int {
	w, _ := browser.Eval[int](tab, 5*time.Second, fmt.Sprintf(`(async () => {
		const pc = window.jetmedia.room?.peerConnection;
		if (!pc) return 0;
		let w = 0;
		(await pc.getStats()).forEach((s) => { if (s.type === "outbound-rtp" && s.kind === "video" && s.rid === %q) w = s.frameWidth ?? 0; });
		return w;
	})()`, rid))
	return w
}
