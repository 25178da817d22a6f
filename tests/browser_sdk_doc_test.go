package tests

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/tests/browser"
)

// TestBrowserSDKDocExample runs the example page of docs/sdk.md, as written there, in two
// Chromium tabs against a node in dev mode: each shows the other's video, a data message
// arrives, and a leave removes the leaver's video from the other page. The page is served
// from a proxy in front of the node, so its root-relative URLs (/sdk/jetmedia.js,
// /dev/token, /rtc) reach the node as they would on the node itself.
func TestBrowserSDKDocExample(t *testing.T) {
	chromium := browser.RequireChromium(t)
	doc, err := os.ReadFile("../docs/sdk.md")
	require.NoError(t, err)
	_, rest, ok := strings.Cut(string(doc), "```html\n")
	require.True(t, ok, "docs/sdk.md has an html example")
	example, _, ok := strings.Cut(rest, "```")
	require.True(t, ok)

	node := startDevNode(t, "sdk-doc", nil)
	target, err := url.Parse(node.HTTPURL())
	require.NoError(t, err)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /example.html", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write([]byte(example))
	})
	mux.Handle("/", httputil.NewSingleHostReverseProxy(target))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)

	b := browser.Start(t, chromium)
	tabs := []*browser.Tab{b.Open(t, srv.URL+"/example.html"), b.Open(t, srv.URL+"/example.html")}
	diagnose := func() string {
		var sb strings.Builder
		for i, tab := range tabs {
			sb.WriteString("\n--- tab " + string(rune('1'+i)) + "\n" + tabConsole(tab))
		}
		return sb.String()
	}
	waitFor := func(tab *browser.Tab, what, cond string) {
		t.Helper()
		waitTab(t, tab, 60*time.Second, what, cond, diagnose)
	}
	for _, tab := range tabs {
		waitFor(tab, "the other's video plays", `[...document.querySelectorAll("#others video")].length === 1 &&
			document.querySelector("#others video").videoWidth > 0`)
	}
	// The page wires its buttons once both its tracks are published.
	waitFor(tabs[0], "the buttons are wired", `document.getElementById("hello").onclick !== null`)
	require.NoError(t, tabs[0].Click("hello"))
	consoleHas := func(tab *browser.Tab, s string) bool {
		for _, l := range tab.Console() {
			if strings.Contains(l, s) {
				return true
			}
		}
		return false
	}
	// 30 s: a loaded CI machine once took more than 10 s to show it.
	require.Eventually(t, func() bool { return consoleHas(tabs[1], "Ada says hello") }, 30*time.Second, 100*time.Millisecond, diagnose())
	require.True(t, consoleHas(tabs[0], "joined demo as"), diagnose())
	require.NoError(t, tabs[0].Click("leave"))
	waitFor(tabs[1], "the leaver's video goes", `document.querySelectorAll("#others video").length === 0`)

	// A page of another origin imports the SDK from the node and joins it there, as docs/sdk.md
	// says it can (the tab's origin is the proxy's, not the node's).
	peer, err := browser.Eval[string](tabs[1], 30*time.Second, fmt.Sprintf(`(async () => {
		const node = %q;
		const { Room } = await import(node + "/sdk/jetmedia.js");
		const { token } = await (await fetch(node + "/dev/token?room=elsewhere&grants=subscribe")).json();
		const room = new Room({ url: node, token });
		const snap = await room.join();
		await room.leave();
		return snap.self.peer })()`, node.HTTPURL()))
	require.NoError(t, err, diagnose())
	require.NotEmpty(t, peer)
}
