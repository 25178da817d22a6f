package app_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/cmd/jetmedia/app"
	"github.com/jetmedia/jetmedia/pipeline/auth"
	"github.com/jetmedia/jetmedia/tests/loggen"
)

var genStart = time.Date(2026, 11, 3, 10, 0, 0, 0, time.UTC)

// With keys configured, the history endpoints need a token with the admin grant for the room.
func TestHistoryAPINeedsAdmin(t *testing.T) {
	key := auth.Key{ID: "k", Secret: []byte("history-tests-secret-0123456789abcdef")}
	cfg := app.Defaults()
	cfg.Name = "history-auth"
	cfg.DataDir = t.TempDir()
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.UDPPort = 0
	cfg.AuthKeys = []auth.Key{key}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	node, err := app.Start(ctx, cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = node.Close() })
	require.NoError(t, loggen.Write(ctx, node.JetStream(), 10, loggen.New("hist", 1, genStart, time.Second).Next))
	ring, err := auth.NewKeyring(key)
	require.NoError(t, err)
	token := func(room string, g ...auth.Grant) string {
		s, err := ring.Sign(auth.NewClaims(room, "tester", g, time.Now(), time.Hour))
		require.NoError(t, err)
		return s
	}
	for _, path := range []string{"/v1/rooms/hist/events", "/v1/rooms/hist/state"} {
		for _, c := range []struct {
			token string
			code  int
		}{
			{"", http.StatusUnauthorized},
			{token("hist", auth.Subscribe), http.StatusForbidden},
			{token("elsewhere", auth.Admin), http.StatusForbidden},
			{token("hist", auth.Admin), http.StatusOK},
		} {
			req, err := http.NewRequest(http.MethodGet, node.HTTPURL()+path, nil)
			require.NoError(t, err)
			if c.token != "" {
				req.Header.Set("Authorization", "Bearer "+c.token)
			}
			resp, err := http.DefaultClient.Do(req)
			require.NoError(t, err)
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			require.Equal(t, c.code, resp.StatusCode, "%s with token %.20q", path, c.token)
		}
	}

	// Without at, /state answers the live projection: once it holds the room, the same JSON as
	// GET /v1/rooms/{room}.
	get := func(path string) (int, string) {
		req, err := http.NewRequest(http.MethodGet, node.HTTPURL()+path, nil)
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+token("hist", auth.Admin))
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return resp.StatusCode, string(b)
	}
	var live string
	require.Eventually(t, func() bool {
		code, body := get("/v1/rooms/hist")
		live = body
		return code == http.StatusOK && strings.Contains(body, `"last_seq":10`)
	}, 30*time.Second, 50*time.Millisecond, "the projection folds the 10 events: %s", live)
	code, state := get("/v1/rooms/hist/state")
	require.Equal(t, http.StatusOK, code)
	require.JSONEq(t, live, state)
}
