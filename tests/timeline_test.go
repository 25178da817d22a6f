package tests

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/events"
	"github.com/jetmedia/jetmedia/pipeline/auth"
	"github.com/jetmedia/jetmedia/pipeline/eventlog"
	"github.com/jetmedia/jetmedia/projections"
	"github.com/jetmedia/jetmedia/tests/browser"
	"github.com/jetmedia/jetmedia/tests/rtcclient"
)

// drawnRow is what the timeline page drew for one peer, read back from its SVG.
type drawnRow struct {
	Peer   string       `json:"peer"`
	Label  string       `json:"label"`
	Class  string       `json:"class"`
	Join   string       `json:"join"`
	Leave  string       `json:"leave"`
	Width  float64      `json:"width"`
	Tracks []drawnTrack `json:"tracks"`
}

type drawnTrack struct {
	Track       string  `json:"track"`
	Label       string  `json:"label"`
	Kind        string  `json:"kind"`
	Source      string  `json:"source"`
	Class       string  `json:"class"`
	Published   string  `json:"published"`
	Unpublished string  `json:"unpublished"`
	Width       float64 `json:"width"`
}

const readRows = `[...document.querySelectorAll("#timeline .peer-row")].map((g) => {
  const bar = g.querySelector(":scope > rect.peer-bar");
  return {
    peer: g.dataset.peer,
    label: g.querySelector(":scope > text.peer-label").firstChild.textContent,
    class: bar.getAttribute("class"),
    join: bar.dataset.join, leave: bar.dataset.leave, width: bar.width.baseVal.value,
    tracks: [...g.querySelectorAll("rect.track-bar")].map((r) => ({
      track: r.dataset.track, kind: r.dataset.kind, source: r.dataset.source,
      label: r.parentNode.querySelector("text.track-label").textContent,
      class: r.getAttribute("class"), published: r.dataset.published, unpublished: r.dataset.unpublished,
      width: r.width.baseVal.value,
    })),
  };
})`

// TestTimelinePage opens the room timeline page in Chromium on a room whose history has
// sessions that ended (by peer.left v1 and v2, with and without unpublishing first), one still
// present, and a real WHIP publisher; it reads the drawing back from the DOM and clicks the
// time axis for the state at two instants. A second node, with a key, shows the page needs a
// pasted admin token there and works with one.
func TestTimelinePage(t *testing.T) {
	chromium := browser.RequireChromium(t) // before the nodes: a skip costs nothing

	node := startDevNode(t, "timeline", nil) // the page mints its admin token at /dev/token
	ctx := ctxT(t, 90*time.Second)

	room := newRoom("timeline")
	t0 := time.Now().UTC().Add(-10 * time.Minute).Truncate(time.Second)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	ap := eventlog.NewAppender(node.JetStream(), "timeline")
	write := func(s int, actor string, p events.Payload) {
		t.Helper()
		e, err := events.New(events.Meta{Room: room, Actor: actor, Node: "timeline", Time: at(s)}, p)
		require.NoError(t, err)
		_, err = ap.Append(ctx, e)
		require.NoError(t, err)
	}
	track := func(peer, id, kind, source string) events.TrackPublished {
		codec := map[string]string{"video": "video/VP8", "audio": "audio/opus"}[kind]
		return events.TrackPublished{Peer: peer, Track: id, Kind: kind, Codec: codec, ClockRate: 90000, Layers: []string{"0"}, Source: source}
	}
	write(0, "system", events.RoomCreated{Node: "timeline"})
	write(30, "alice", events.PeerJoined{Peer: "a1", Transport: "sdk", Role: "publisher", Node: "timeline", Identity: "alice", Name: "Alice <b>"})
	write(40, "alice", track("a1", "ta-cam", "video", "camera"))
	write(40, "alice", track("a1", "ta-mic", "audio", "mic"))
	write(60, "bob", events.PeerJoined{Peer: "b1", Transport: "sdk", Role: "publisher", Node: "timeline", Identity: "bob"})
	write(90, "bob", track("b1", "tb-cam", "video", ""))
	write(120, "alice", events.TrackUnpublished{Peer: "a1", Track: "ta-cam"})
	// A leave written before peer.left.v2 existed; it ends ta-mic, whose unpublish was never
	// recorded.
	write(180, "alice", events.PeerLeftV1{Peer: "a1", Reason: "closed"})
	write(200, "c1", events.PeerJoined{Peer: "c1", Transport: events.TransportWHEP, Role: "viewer", Node: "timeline"})
	write(240, "c1", events.NewPeerLeft("c1", "disconnected"))

	// A real publisher now: its join, two tracks and its leave come from the node itself.
	pubTok := httpGet(t, node.HTTPURL()+"/dev/token?"+url.Values{"room": {room}, "identity": {"cam-bot"}, "grants": {"publish"}, "format": {"text"}}.Encode())
	pub, err := rtcclient.Publish(ctx, clientAPI(t), node.HTTPURL(), room, rtcclient.WithToken(strings.TrimSpace(pubTok)))
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		r, err := projections.LoadRoom(ctx, node.Rooms(), room)
		return err == nil && len(r.Tracks) == 3 // tb-cam and the publisher's two
	}, 20*time.Second, 20*time.Millisecond)
	require.NoError(t, pub.Close(true))
	require.Eventually(t, func() bool {
		r, err := projections.LoadRoom(ctx, node.Rooms(), room)
		return err == nil && len(r.Peers) == 1 // b1: the publisher's leave is in the log
	}, 20*time.Second, 20*time.Millisecond)

	index := httpGet(t, node.HTTPURL()+"/")
	require.Contains(t, index, `href="timeline.html"`, "the demo page links the timeline")

	b := browser.Start(t, chromium) // cleaned up before the nodes
	// limit=4: the room's 15-odd events come in several pages.
	tab := b.Open(t, node.HTTPURL()+"/timeline.html?"+url.Values{"room": {room}, "limit": {"4"}}.Encode())
	waitPage(t, tab, "ready")
	status := tab.Text("status")
	require.Regexp(t, `events, 4 peers \(1 present\), 5 tracks`, status)

	rows, err := browser.Eval[[]drawnRow](tab, 5*time.Second, readRows)
	require.NoError(t, err)
	require.Len(t, rows, 4, "one row per peer session: %+v", rows)
	iso := func(s int) string { return at(s).Format(time.RFC3339Nano) }

	alice := rows[0]
	require.Equal(t, "a1", alice.Peer)
	require.Equal(t, "Alice <b>", alice.Label, "the name, as text")
	require.Contains(t, alice.Class, "closed")
	require.Equal(t, iso(30), alice.Join)
	require.Equal(t, iso(180), alice.Leave, "a v1 leave closes the bar")
	require.Equal(t, []drawnTrack{
		{Track: "ta-cam", Label: "video · camera", Kind: "video", Source: "camera", Class: "track-bar kind-video closed", Published: iso(40), Unpublished: iso(120), Width: alice.Tracks[0].Width},
		{Track: "ta-mic", Label: "audio · mic", Kind: "audio", Source: "mic", Class: "track-bar kind-audio closed", Published: iso(40), Unpublished: iso(180), Width: alice.Tracks[1].Width},
	}, alice.Tracks)
	require.Greater(t, alice.Width, alice.Tracks[0].Width, "150 s present, 80 s of camera")

	bob := rows[1]
	require.Equal(t, "b1", bob.Peer)
	require.Equal(t, "bob", bob.Label, "the identity when there is no name")
	require.Contains(t, bob.Class, "open", "still present: open to now")
	require.Empty(t, bob.Leave)
	require.Len(t, bob.Tracks, 1)
	require.Equal(t, "video", bob.Tracks[0].Label, "the kind alone without a source")
	require.Contains(t, bob.Tracks[0].Class, "open")
	require.Greater(t, bob.Width, alice.Width, "9 minutes and counting against 2.5")

	c := rows[2]
	require.Equal(t, "c1", c.Peer)
	require.Equal(t, "c1", c.Label, "the peer id without identity or name")
	require.Contains(t, c.Class, "closed")
	require.Equal(t, iso(240), c.Leave, "a v2 leave closes the bar")
	require.Empty(t, c.Tracks)

	cam := rows[3]
	require.Equal(t, "cam-bot", cam.Label)
	require.Contains(t, cam.Class, "closed")
	require.NotEmpty(t, cam.Leave)
	require.Len(t, cam.Tracks, 2)
	kinds := []string{cam.Tracks[0].Kind, cam.Tracks[1].Kind}
	require.ElementsMatch(t, []string{"audio", "video"}, kinds)
	for _, tr := range cam.Tracks {
		require.Contains(t, tr.Class, "closed")
		require.NotEmpty(t, tr.Unpublished)
	}

	ticks, err := browser.Eval[int](tab, 5*time.Second, `document.querySelectorAll("#timeline .tick-label").length`)
	require.NoError(t, err)
	require.GreaterOrEqual(t, ticks, 3, "an axis with ticks (and its UTC caption)")
	title, err := browser.Eval[string](tab, 5*time.Second, `document.querySelector('#timeline rect.peer-bar[data-peer="a1"] title').textContent`)
	require.NoError(t, err)
	require.Contains(t, title, "joined "+iso(30))
	require.Contains(t, title, "left "+iso(180)+" (closed)") // v1: no cause recorded

	// Clicking the axis: the state at that instant, from /state?at=.
	stateAt := func(s int) ([]string, []string) {
		t.Helper()
		clickAxis(t, tab, iso(s))
		waitState(t, tab)
		peers, err := browser.Eval[[]string](tab, 5*time.Second, `[...document.querySelectorAll("#state .state-peers li")].map((li) => li.dataset.peer)`)
		require.NoError(t, err)
		tracks, err := browser.Eval[[]string](tab, 5*time.Second, `[...document.querySelectorAll("#state .state-tracks li")].map((li) => li.dataset.track)`)
		require.NoError(t, err)
		return peers, tracks
	}
	peers, tracks := stateAt(100)
	require.ElementsMatch(t, []string{"a1", "b1"}, peers)
	require.ElementsMatch(t, []string{"ta-cam", "ta-mic", "tb-cam"}, tracks)
	peers, tracks = stateAt(210)
	require.ElementsMatch(t, []string{"b1", "c1"}, peers)
	require.ElementsMatch(t, []string{"tb-cam"}, tracks)
	cursor, err := browser.Eval[int](tab, 5*time.Second, `document.querySelectorAll("#timeline #cursor").length`)
	require.NoError(t, err)
	require.Equal(t, 1, cursor, "the clicked instant is marked")

	// A node with a key: no token, no timeline; a pasted admin token opens it.
	keyed := startNode(t, nodeConfig(t, "timeline-keyed"))
	kap := eventlog.NewAppender(keyed.JetStream(), "timeline-keyed")
	for i, p := range []events.Payload{
		events.RoomCreated{Node: "timeline-keyed"},
		events.PeerJoined{Peer: "k1", Transport: "whip", Role: "publisher", Node: "timeline-keyed", Identity: "kim"},
	} {
		e, err := events.New(events.Meta{Room: room, Node: "timeline-keyed", Time: at(i)}, p)
		require.NoError(t, err)
		_, err = kap.Append(ctx, e)
		require.NoError(t, err)
	}
	ktab := b.Open(t, keyed.HTTPURL()+"/timeline.html?"+url.Values{"room": {room}}.Encode())
	waitPage(t, ktab, "error")
	require.Contains(t, ktab.Text("status"), "paste a token with the admin grant")

	tok := token(t, room, "auditor", auth.Admin)
	_, err = browser.Eval[bool](ktab, 5*time.Second, fmt.Sprintf(`document.getElementById("token").value = %q, true`, tok))
	require.NoError(t, err)
	require.NoError(t, ktab.Click("load"))
	waitPage(t, ktab, "ready")
	krows, err := browser.Eval[[]drawnRow](ktab, 5*time.Second, readRows)
	require.NoError(t, err)
	require.Len(t, krows, 1)
	require.Equal(t, "kim", krows[0].Label)
	require.Contains(t, krows[0].Class, "open")
}

// waitPage waits for the timeline page's body data-state to become want.
func waitPage(t *testing.T, tab *browser.Tab, want string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		got, _ := browser.Eval[string](tab, 5*time.Second, `document.body.dataset.state || ""`)
		if got == want {
			return
		}
		if time.Now().After(deadline) || (got == "error" && want != "error") {
			t.Fatalf("timeline page state %q, want %q; status: %s\nconsole:\n%s", got, want, tab.Text("status"), tabConsole(tab))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// clickAxis clicks the time axis where the page draws instant iso.
func clickAxis(t *testing.T, tab *browser.Tab, iso string) {
	t.Helper()
	ok, err := browser.Eval[bool](tab, 5*time.Second, fmt.Sprintf(`(() => {
  const axis = document.getElementById("axis");
  const svg = document.getElementById("timeline").getBoundingClientRect();
  const band = axis.getBoundingClientRect();
  const x = svg.left + window.timeline.xOf(%q);
  if (!(x >= band.left && x <= band.right)) return false;
  axis.dispatchEvent(new MouseEvent("click", { bubbles: true, clientX: x, clientY: band.top + band.height / 2 }));
  return true;
})()`, iso))
	require.NoError(t, err)
	require.True(t, ok, "instant %s is on the axis", iso)
}

func waitState(t *testing.T, tab *browser.Tab) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		got, _ := browser.Eval[string](tab, 5*time.Second, `document.getElementById("state").dataset.state || ""`)
		if got == "ready" {
			return
		}
		if time.Now().After(deadline) || got == "error" || got == "empty" {
			t.Fatalf("state panel %q: %s\nconsole:\n%s", got, tab.Text("state"), tabConsole(tab))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func httpGet(t *testing.T, u string) string {
	t.Helper()
	resp, err := http.Get(u)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s: %s", u, body)
	return string(body)
}
