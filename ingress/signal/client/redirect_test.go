package client

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/coder/websocket/wsjson"
	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/ingress/signal"
)

func TestResolveRedirect(t *testing.T) {
	for _, tc := range []struct{ base, ref, want string }{
		{"ws://a:1/rtc", "ws://b:2/rtc?jm_placed=a", "ws://b:2/rtc?jm_placed=a"},
		{"wss://a:1/rtc", "/rtc?jm_placed=a", "wss://a:1/rtc?jm_placed=a"},
		{"ws://a:1/x/rtc", "//b:2/rtc", "ws://b:2/rtc"},
		{"ws://a:1/rtc", "http://b:2/rtc", "ws://b:2/rtc"},
		{"ws://a:1/rtc", "https://b:2/rtc", "wss://b:2/rtc"},
	} {
		got, err := resolveRedirect(tc.base, tc.ref)
		require.NoError(t, err, tc.ref)
		require.Equal(t, tc.want, got, tc.ref)
	}
	for _, ref := range []string{"ftp://b/rtc", "javascript:alert(1)", "ws://b:2/%zz"} {
		_, err := resolveRedirect("ws://a:1/rtc", ref)
		require.Error(t, err, ref)
	}
}

// TestJoinRedirectLimit: a server that answers every join with a redirect (jetmedia nodes
// never redirect a placed join, so only a misbehaving server does) makes Join fail after
// MaxRedirects, having dialled 1 + MaxRedirects times and followed the relative URL.
func TestJoinRedirectLimit(t *testing.T) {
	var dials atomic.Int32
	var lastQuery atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		dials.Add(1)
		lastQuery.Store(r.URL.RawQuery)
		ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		defer cancel()
		var join signal.ClientMessage
		if wsjson.Read(ctx, ws, &join) != nil || join.Type != signal.TypeJoin {
			_ = ws.Close(websocket.StatusPolicyViolation, "no join")
			return
		}
		_ = wsjson.Write(ctx, ws, signal.ServerMessage{Type: signal.TypeRedirect, URL: "/rtc?hop=" + string(rune('0'+dials.Load()))})
		_ = ws.Close(websocket.StatusNormalClosure, "redirect")
	}))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var redirects atomic.Int32
	_, err := Join(ctx, strings.Replace(srv.URL, "http://", "ws://", 1)+"/rtc", "token", Options{
		Trace: func(fromServer bool, raw []byte) {
			if fromServer && strings.Contains(string(raw), `"redirect"`) {
				redirects.Add(1)
			}
		}})
	require.ErrorIs(t, err, ErrTooManyRedirects)
	require.EqualValues(t, 1+MaxRedirects, dials.Load())
	require.EqualValues(t, 1+MaxRedirects, redirects.Load())
	require.Equal(t, "hop=3", lastQuery.Load(), "each redirect's URL was followed")
	var se *Error
	require.False(t, errors.As(err, &se), "not a server error")
}
