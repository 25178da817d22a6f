package browser_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/tests/browser"
)

// These tests check the demo page against a stand-in for the server, so that
// page bugs show up without a media stack.

const webDir = "../../ingress/whip/demo" // the WHIP/WHEP demo page

// serve stands in for a node: the demo page's files, api on /whip/ and /whep/, and with dev a
// dev-mode /dev/token that hands out "dev-token-for-<grants>".
func serve(t *testing.T, api http.Handler, dev bool) string {
	mux := http.NewServeMux()
	mux.Handle("/", http.FileServerFS(os.DirFS(webDir)))
	if dev {
		mux.HandleFunc("/dev/token", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, `{"token":"dev-token-for-`+r.URL.Query().Get("grants")+`"}`)
		})
	}
	if api != nil {
		mux.Handle("/whep/", api)
		mux.Handle("/whip/", api)
	}
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.URL
}

func TestPageLoadsCleanly(t *testing.T) {
	b := browser.Start(t, browser.RequireChromium(t))
	tab := b.Open(t, serve(t, nil, true)+"/")

	stats, err := tab.Stats()
	require.NoError(t, err)
	require.Equal(t, browser.PageStats{State: "idle", PLIsByLayer: map[string]int{}}, stats)
	room, err := browser.Eval[string](tab, 5*time.Second, `document.getElementById("room").value`)
	require.NoError(t, err)
	require.Equal(t, "demo", room)
	require.Empty(t, tab.Console(), "the page must load without console output")
	dev, err := browser.Eval[bool](tab, 5*time.Second, `!document.getElementById("dev-mode").hidden`)
	require.NoError(t, err)
	require.True(t, dev, "a server with /dev/token is announced as in dev mode")
}

// TestPageWithoutDevMode: on a server with no /dev/token and no token pasted, the page sends
// its offer without one and shows the server's 401 with a hint on how to get a token; a
// pasted token (?token=) is sent as the bearer token.
func TestPageWithoutDevMode(t *testing.T) {
	auths := make(chan string, 4)
	api := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auths <- r.Header.Get("Authorization")
		if r.Header.Get("Authorization") == "" {
			w.Header().Set("WWW-Authenticate", `Bearer realm="jetmedia"`)
			http.Error(w, "this endpoint needs a token", http.StatusUnauthorized)
			return
		}
		http.Error(w, "token lacks the \"publish\" grant", http.StatusForbidden)
	})
	b := browser.Start(t, browser.RequireChromium(t))
	base := serve(t, api, false)
	tab := b.Open(t, base+"/?room=r2&auto=publish")
	require.Eventually(t, func() bool { return strings.HasPrefix(tab.Text("status"), "publish error: HTTP 401") }, 10*time.Second, 50*time.Millisecond,
		"status line %q", tab.Text("status"))
	require.Contains(t, tab.Text("status"), "jetmedia token --room r2")
	require.Equal(t, "", <-auths)
	dev, err := browser.Eval[bool](tab, 5*time.Second, `!document.getElementById("dev-mode").hidden`)
	require.NoError(t, err)
	require.False(t, dev)

	tab = b.Open(t, base+"/?room=r2&auto=publish&token=pasted-token")
	require.Eventually(t, func() bool { return strings.HasPrefix(tab.Text("status"), "publish error: HTTP 403") }, 10*time.Second, 50*time.Millisecond,
		"status line %q", tab.Text("status"))
	require.Equal(t, "Bearer pasted-token", <-auths)
}

// TestPagePlayRetriesThenShowsError has the stand-in answer 409 (no publisher)
// twice and then reject the offer: the page must retry and then show the
// server's error text.
func TestPagePlayRetriesThenShowsError(t *testing.T) {
	var (
		mu      sync.Mutex
		offers  []string
		ctypes  []string
		bearers []string
		gapsOK  = true
		lastReq time.Time
	)
	api := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		if r.Method != http.MethodPost || r.URL.Path != "/whep/r1" {
			http.Error(w, "unexpected "+r.Method+" "+r.URL.Path, http.StatusTeapot)
			return
		}
		if !lastReq.IsZero() && time.Since(lastReq) < 400*time.Millisecond {
			gapsOK = false
		}
		lastReq = time.Now()
		offers = append(offers, string(body))
		ctypes = append(ctypes, r.Header.Get("Content-Type"))
		bearers = append(bearers, r.Header.Get("Authorization"))
		if len(offers) <= 2 {
			w.Header().Set("Retry-After", "1")
			http.Error(w, "room has no publisher", http.StatusConflict)
			return
		}
		http.Error(w, "offer has no supported video codec", http.StatusBadRequest)
	})
	b := browser.Start(t, browser.RequireChromium(t))
	tab := b.Open(t, serve(t, api, true)+"/?room=r1&auto=play")

	want := "play error: HTTP 400: offer has no supported video codec"
	require.Eventually(t, func() bool { return tab.Text("status") == want }, 10*time.Second, 100*time.Millisecond,
		"status line %q; console:\n%s", tab.Text("status"), strings.Join(tab.Console(), "\n"))

	mu.Lock()
	defer mu.Unlock()
	require.Len(t, offers, 3)
	require.True(t, gapsOK, "retries must wait about 500 ms")
	for i, offer := range offers {
		require.Equal(t, "application/sdp", ctypes[i])
		require.Equal(t, "Bearer dev-token-for-subscribe", bearers[i], "the dev token is sent")
		require.True(t, strings.HasPrefix(offer, "v=0"), "offer %d is not SDP:\n%s", i, offer)
		require.Contains(t, offer, "m=video")
		require.Contains(t, offer, "m=audio")
		require.Contains(t, offer, "a=recvonly")
		require.Contains(t, offer, "a=candidate:", "offer %d was sent before ICE gathering", i)
	}
	room, err := browser.Eval[string](tab, 5*time.Second, `document.getElementById("room").value`)
	require.NoError(t, err)
	require.Equal(t, "r1", room)
}

// TestPagePublishSendsCameraOffer checks that auto=publish opens the (fake)
// camera and microphone and offers them send-only with codecs the server takes.
func TestPagePublishSendsCameraOffer(t *testing.T) {
	offers := make(chan string, 1)
	api := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if r.Method == http.MethodPost && r.URL.Path == "/whip/cam" {
			select {
			case offers <- string(body):
			default:
			}
		}
		http.Error(w, "publishing is closed", http.StatusServiceUnavailable)
	})
	b := browser.Start(t, browser.RequireChromium(t))
	tab := b.Open(t, serve(t, api, true)+"/?room=cam&auto=publish")

	var offer string
	select {
	case offer = <-offers:
	case <-time.After(10 * time.Second):
		t.Fatalf("no WHIP offer; status %q; console:\n%s", tab.Text("status"), strings.Join(tab.Console(), "\n"))
	}
	require.Contains(t, offer, "a=sendonly")
	require.NotContains(t, offer, "a=recvonly")
	require.Contains(t, offer, "VP8/90000")
	require.Contains(t, offer, "opus/48000/2")
	require.Eventually(t, func() bool {
		return tab.Text("status") == "publish error: HTTP 503: publishing is closed"
	}, 5*time.Second, 50*time.Millisecond, "status line %q", tab.Text("status"))
}
