package app_test

import (
	"context"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/cmd/jetmedia/app"
)

// TestPagesAndOrigins: every page and the browser SDK are served at the URLs the docs and the
// browser tests use, from the packages they now live in; a page of another origin is refused
// (the /rtc WebSocket included), the node's own origin is not.
func TestPagesAndOrigins(t *testing.T) {
	cfg := app.Defaults()
	cfg.Name = "pages"
	cfg.DataDir = t.TempDir()
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.UDPPort = 0
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	node, err := app.Start(ctx, cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = node.Close() })
	base := node.HTTPURL()

	get := func(path, origin string) (int, string, string) {
		req, err := http.NewRequest(http.MethodGet, base+path, nil)
		require.NoError(t, err)
		if origin != "" {
			req.Header.Set("Origin", origin)
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return resp.StatusCode, resp.Header.Get("Content-Type"), string(body)
	}
	for path, want := range map[string]string{
		"/":                `<script type="module" src="app.js">`,
		"/app.js":          "whip",
		"/room.html":       `src="room.js"`,
		"/room.js":         `from "./sdk/jetmedia.js"`,
		"/sdk/jetmedia.js": "export class Room",
		"/timeline.html":   `src="timeline.js"`,
		"/timeline.js":     "/v1/rooms/",
		"/cluster.html":    `src="/cluster.js"`,
		"/cluster.js":      "/forget",
	} {
		code, _, body := get(path, "")
		require.Equal(t, http.StatusOK, code, path)
		require.Contains(t, body, want, path)
	}
	code, _, _ := get("/no-such-page", "")
	require.Equal(t, http.StatusNotFound, code)

	code, _, _ = get("/healthz", base)
	require.Equal(t, http.StatusOK, code, "the node's own origin")
	code, _, _ = get("/healthz", "http://localhost:5173")
	require.Equal(t, http.StatusOK, code, "a loopback dev page, in dev mode")
	code, _, body := get("/rtc", "https://evil.example")
	require.Equal(t, http.StatusForbidden, code, "the WebSocket from another origin")
	require.Contains(t, body, "--allowed-origins")
}
