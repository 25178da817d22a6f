package cluster

import (
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/cmd/jetmedia/app"
	"github.com/jetmedia/jetmedia/ingress/signal/client"
	"github.com/jetmedia/jetmedia/schemas"
	"github.com/jetmedia/jetmedia/tests/browser"
	"github.com/jetmedia/jetmedia/tests/rtcclient"
)

// TestRTCPlacementBrowser: the demo room page, served by a full node a (--max-sessions 1,
// holding a WHIP publisher), joins through the browser SDK: a's redirect message sends it to
// b, where it joins (peer.joined's node), publishes its camera and receives the publisher's
// video; the page's console has the SDK's debug line and its signalling matches the schemas.
// The nodes allow each other's origins (from their leases), as they must for this.
func TestRTCPlacementBrowser(t *testing.T) {
	chromium := browser.RequireChromium(t) // before the nodes: a skip costs nothing
	nodes := startRouted(t, func(i int, cfg *app.Config) {
		if i == 0 {
			cfg.MaxSessions = 1
		}
		// The page comes from a and opens its WebSocket on b: b allows a's origin because a
		// is a node of the system (its lease names its HTTP URL), with no --allowed-origins.
	}, "a", "b")
	a, b := nodes[0], nodes[1]
	ctx := ctxT(t, 2*time.Minute)
	api := clientAPI(t)
	room := newRoom("rtcpage")
	pub, err := rtcclient.Publish(ctx, api, a.HTTPURL(), room, asPublisher(t, room))
	require.NoError(t, err)
	defer pub.Close(true)
	waitTracks(t, b, room, 2)

	// Until a has read b's lease it refuses joins with full; a Go SDK join that gets through
	// (redirected) shows it has, so the page's first join is placed.
	require.Eventually(t, func() bool {
		r, err := client.Join(ctx, a.HTTPURL()+"/rtc", sdkToken(t, room, "probe"), client.Options{API: api})
		if err != nil {
			return false
		}
		_ = r.Leave()
		return true
	}, 20*time.Second, 500*time.Millisecond)

	br := browser.Start(t, chromium)
	q := url.Values{"room": {room}, "name": {"page"}, "token": {sdkToken(t, room, "web-page")}, "auto": {"join"},
		"video": {"320x240"}, "trace": {"1"}}
	tab := br.Open(t, a.HTTPURL()+"/room.html?"+q.Encode())
	diagnose := func() string {
		return "\nstatus: " + tab.Text("status") + "\nconsole:\n  " + strings.Join(tab.Console(), "\n  ")
	}
	waitPage(t, tab, 40*time.Second, "joined", `window.jetmedia.room?.state === "joined"`, diagnose)
	joins := joinsOf(t, b, room, "web-page")
	require.Len(t, joins, 1, "one join recorded")
	require.Equal(t, "b", joins[0].Node, "the page was sent from full a to b")
	self, err := browser.Eval[string](tab, 10*time.Second, `window.jetmedia.room.self.peer`)
	require.NoError(t, err)
	require.Equal(t, joins[0].Peer, self)
	require.True(t, strings.Contains(strings.Join(tab.Console(), "\n"), "jetmedia: join redirected"), "the SDK's debug line%s", diagnose())

	// Media both ways through b: the page receives the WHIP publisher's video (synthetic VP8,
	// counted in bytes: it does not decode), and its own camera and mic are published (2
	// tracks of the publisher + 2 of the page).
	waitPage(t, tab, 30*time.Second, "receive the publisher's video",
		`(async () => Object.values((await window.jetmedia.stats()).peers).some(p => p.bytesReceived > 20000))()`, diagnose)
	waitTracks(t, b, room, 4)

	wire, err := browser.Eval[[][2]string](tab, 10*time.Second, `window.jetmedia.wire`)
	require.NoError(t, err)
	v, err := schemas.NewSignal()
	require.NoError(t, err)
	redirects := 0
	for _, m := range wire {
		dir := schemas.FromClient
		if m[0] == "server" {
			dir = schemas.FromServer
		}
		require.NoError(t, v.Validate(dir, []byte(m[1])), "%s %s", dir, m[1])
		if dir == schemas.FromServer && strings.Contains(m[1], `"type":"redirect"`) {
			redirects++
		}
	}
	require.Equal(t, 1, redirects, "one redirect message")
}

// waitPage polls cond (a JavaScript expression or a promise of one) in tab until it is true.
func waitPage(t *testing.T, tab *browser.Tab, timeout time.Duration, what, cond string, diagnose func() string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, err := browser.Eval[bool](tab, 10*time.Second, `(async () => { try { return Boolean(await (`+cond+`)) } catch { return false } })()`)
		if err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s (last error %v)%s", what, timeout, err, diagnose())
		}
		time.Sleep(100 * time.Millisecond)
	}
}
