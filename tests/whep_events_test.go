package tests

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/egress/whep"
	"github.com/jetmedia/jetmedia/pipeline/auth"
	"github.com/jetmedia/jetmedia/tests/browser"
	"github.com/jetmedia/jetmedia/tests/rtcclient"
)

// TestWHEPLayerEvents: a pion WHEP viewer of a Chromium simulcast publisher subscribes to the
// WHEP draft's server-sent events ("layers"): the stream's first event lists the track's three
// layers and the one received; after the viewer asks for the low layer through the layer
// extension, an event says it is requested and received; the stream ends with the session.
func TestWHEPLayerEvents(t *testing.T) {
	chromium := browser.RequireChromium(t)
	node := startDevNode(t, "whep-events", nil)
	b := browser.Start(t, chromium)
	room := newRoom("whep-events")
	publisher := b.Open(t, node.HTTPURL()+"/?"+url.Values{"room": {room}, "auto": {"publish"}, "simulcast": {"1"},
		"codec": {"VP8"}, "video": {"640x360"}}.Encode())
	waitStats(t, publisher, "the publisher sends three layers", 30*time.Second, func(s browser.PageStats) bool {
		return s.State == "publishing" && s.LayersSent == 3
	}, func() string { return tabConsole(publisher) })

	tok, err := node.Keyring().Sign(auth.NewClaims(room, "viewer", []auth.Grant{auth.Subscribe}, time.Now(), time.Hour))
	require.NoError(t, err)
	ctx := ctxT(t, 60*time.Second)
	api, err := rtcclient.NewAPI()
	require.NoError(t, err)
	v, err := rtcclient.Play(ctx, api, node.HTTPURL(), room, rtcclient.WithToken(tok))
	require.NoError(t, err)
	t.Cleanup(func() { _ = v.Close() })
	session, err := url.Parse(node.HTTPURL())
	require.NoError(t, err)
	session, err = session.Parse(v.Location)
	require.NoError(t, err)

	do := func(method, path, body string) *http.Response {
		req, err := http.NewRequestWithContext(ctx, method, session.String()+path, strings.NewReader(body))
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		return resp
	}
	// The draft's subscription, then the stream.
	resp := do(http.MethodPost, "/sse", `["layers"]`)
	require.Equal(t, http.StatusCreated, resp.StatusCode)
	require.NoError(t, resp.Body.Close())
	resp = do(http.MethodPost, "/sse", `{"not":"an array"}`)
	require.Equal(t, http.StatusBadRequest, resp.StatusCode)
	require.NoError(t, resp.Body.Close())
	streamCtx, stop := context.WithCancel(ctx)
	defer stop()
	req, err := http.NewRequestWithContext(streamCtx, http.MethodGet, session.String()+"/sse", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+tok)
	stream, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer func() { _ = stream.Body.Close() }()
	require.Equal(t, http.StatusOK, stream.StatusCode)
	require.Equal(t, "text/event-stream", stream.Header.Get("Content-Type"))
	events := make(chan whep.LayersEvent, 16)
	go func() {
		defer close(events)
		sc := bufio.NewScanner(stream.Body)
		name := ""
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "event: "):
				name = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: ") && name == "layers":
				var ev whep.LayersEvent
				if json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &ev) == nil {
					events <- ev
				}
			}
		}
	}()
	next := func(what string, ok func(whep.MediaLayers) bool) whep.MediaLayers {
		t.Helper()
		for {
			select {
			case ev, open := <-events:
				require.True(t, open, "the stream ended before %s", what)
				for _, m := range ev.Medias {
					if ok(m) {
						return m
					}
				}
			case <-time.After(20 * time.Second):
				t.Fatalf("no layers event with %s within 20 s", what)
			}
		}
	}
	first := next("the track's three layers", func(m whep.MediaLayers) bool { return len(m.Layers) == 3 })
	require.Equal(t, []whep.EncodingInfo{{EncodingID: "q"}, {EncodingID: "h"}, {EncodingID: "f"}}, first.Layers)
	t.Logf("first event: %+v", first)

	resp = do(http.MethodPost, "/layer", `{"encodingId":"q"}`)
	require.Equal(t, http.StatusNoContent, resp.StatusCode)
	require.NoError(t, resp.Body.Close())
	// Requested and received may change within one look at the session, so in one event.
	got := next("q requested and received", func(m whep.MediaLayers) bool { return m.Requested == "q" && m.Current == "q" })
	t.Logf("after the switch: %+v", got)

	// The stream ends with the session.
	require.NoError(t, v.Close())
	deadline := time.After(10 * time.Second)
	for open := true; open; {
		select {
		case _, open = <-events:
		case <-deadline:
			t.Fatal("the event stream outlived its session by 10 s")
		}
	}
}
