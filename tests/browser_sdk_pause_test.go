package tests

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/ingress/signal"
	"github.com/jetmedia/jetmedia/tests/browser"
)

// activeEncodings is what the room page's simulcast sender sends now: its encodings' RIDs that
// are active, lowest first as the SDK made them.
func activeEncodings(tab *browser.Tab) ([]string, error) {
	return browser.Eval[[]string](tab, 5*time.Second, `(() => {
		const pc = window.jetmedia.room?.peerConnection;
		const s = pc?.getSenders().find((s) => (s.getParameters().encodings ?? []).length > 1);
		return s ? s.getParameters().encodings.filter((e) => e.active !== false).map((e) => e.rid) : [];
	})()`)
}

// TestBrowserSDKLayersPaused: a Chromium simulcast publisher (browser SDK, three layers) that
// nobody watches is told after signal.PauseAfter to send only its lowest layer, and stops
// encoding the others; a WHEP viewer asking for the top layer makes the node name it again,
// the publisher encodes it again and the viewer decodes it at the top layer's width. Its
// signalling (layers_active included) matches the schemas.
func TestBrowserSDKLayersPaused(t *testing.T) {
	chromium := browser.RequireChromium(t)
	wire.ran(t)
	node := startDevNode(t, "sdk-pause", nil)
	b := browser.Start(t, chromium)
	room := newRoom("sdk-pause")
	pub := b.Open(t, node.HTTPURL()+"/room.html?"+url.Values{"room": {room}, "name": {"pub"}, "auto": {"join"},
		"simulcast": {"1"}, "codec": {"VP8"}, "video": {"640x360"}, "trace": {"1"}}.Encode())
	diagnose := func() string {
		enc, err := activeEncodings(pub)
		return fmt.Sprintf("\nactive encodings %v (err %v); publisher sends: %s\nconsole:\n%s", enc, err, sentCodecs(pub), tabConsole(pub))
	}
	wait := func(what string, timeout time.Duration, ok func() bool) {
		t.Helper()
		deadline := time.Now().Add(timeout)
		for !ok() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within %s%s", what, timeout, diagnose())
			}
			time.Sleep(250 * time.Millisecond)
		}
	}
	wait("the publisher sends three layers", 30*time.Second, func() bool {
		enc, _ := activeEncodings(pub)
		return len(enc) == 3 && sentWidth(pub, "f") > 0
	})
	published := time.Now()
	wait("the unwatched upper layers are paused", signal.PauseAfter+20*time.Second, func() bool {
		enc, _ := activeEncodings(pub)
		return slices.Equal(enc, []string{"q"})
	})
	t.Logf("upper layers paused %v after the publisher was seen sending three (PauseAfter %v)", time.Since(published).Round(100*time.Millisecond), signal.PauseAfter)
	// Paused means not encoded: f's frame count stands still.
	framesF := func() int {
		n, _ := browser.Eval[int](pub, 5*time.Second, `(async () => {
			let n = 0;
			(await window.jetmedia.room.peerConnection.getStats()).forEach((s) => { if (s.type === "outbound-rtp" && s.rid === "f") n = s.framesEncoded ?? 0; });
			return n;
		})()`)
		return n
	}
	before := framesF()
	time.Sleep(time.Second)
	require.LessOrEqual(t, framesF()-before, 2, "f is still encoded while paused%s", diagnose())

	whep := b.Open(t, node.HTTPURL()+"/?"+url.Values{"room": {room}, "auto": {"play"}, "layer": {"f"}}.Encode())
	asked := time.Now()
	wait("the watched top layer is sent again", 20*time.Second, func() bool {
		enc, _ := activeEncodings(pub)
		return slices.Contains(enc, "f")
	})
	resumed := time.Since(asked)
	var ws browser.PageStats
	wait("the WHEP viewer decodes the top layer", 30*time.Second, func() bool {
		ws, _ = whep.Stats()
		return ws.FramesDecoded > 10 && ws.FrameWidth > 0 && ws.FrameWidth == sentWidth(pub, "f")
	})
	t.Logf("top layer asked for -> sent again %v, decoded at %dx%d %v after the viewer opened", resumed.Round(100*time.Millisecond),
		ws.FrameWidth, ws.FrameHeight, time.Since(asked).Round(100*time.Millisecond))

	msgs, err := browser.Eval[[][2]string](pub, 5*time.Second, `window.jetmedia.wire`)
	require.NoError(t, err)
	wl := &wireLog{}
	for _, m := range msgs {
		wl.trace(m[0] == "server", []byte(m[1]))
		wire.trace(m[0] == "server", []byte(m[1]))
	}
	seen := wl.requireValid(t)
	require.Positive(t, seen["server.layers_active"], "no layers_active message")
	require.False(t, strings.Contains(fmt.Sprint(seen), "server.error"), "errors: %v", seen)
}
