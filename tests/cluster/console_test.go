package cluster

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/pipeline/auth"
	"github.com/jetmedia/jetmedia/pipeline/eventlog"
	"github.com/jetmedia/jetmedia/projections/clusterapi"
	"github.com/jetmedia/jetmedia/projections/presence"
	"github.com/jetmedia/jetmedia/tests/browser"
)

// getCluster asks node url for GET /v1/cluster with tok ("" none): the status and the view.
func getCluster(t *testing.T, url, tok string) (int, clusterapi.View, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctxT(t, 10*time.Second), http.MethodGet, url+"/v1/cluster", nil)
	require.NoError(t, err)
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	var v clusterapi.View
	if resp.StatusCode == http.StatusOK {
		require.NoError(t, json.Unmarshal(body, &v), "%s", body)
	}
	return resp.StatusCode, v, string(body)
}

// TestClusterConsole: three routed nodes; GET /v1/cluster needs an admin token for every room,
// and then names the three nodes, the log's replicas and leader and the answering node's
// routes to the other two; the console page (Chromium) shows the same; a node that stops is
// shown lost once its lease lapses.
func TestClusterConsole(t *testing.T) {
	nodes := startRouted(t, nil, "a", "b", "c")
	a := nodes[0]

	status, _, body := getCluster(t, a.HTTPURL(), "")
	require.Equal(t, http.StatusUnauthorized, status, body)
	status, _, body = getCluster(t, a.HTTPURL(), token(t, "some-room", "ops", auth.Admin))
	require.Equal(t, http.StatusForbidden, status, body)
	status, _, body = getCluster(t, a.HTTPURL(), token(t, auth.AnyRoom, "ops", auth.Subscribe))
	require.Equal(t, http.StatusForbidden, status, body)

	admin := token(t, auth.AnyRoom, "ops", auth.Admin)
	var v clusterapi.View
	require.Eventually(t, func() bool {
		status, v, body = getCluster(t, a.HTTPURL(), admin)
		require.Equal(t, http.StatusOK, status, body)
		return len(v.Nodes) == 3 && len(v.Streams) > 0 && v.Streams[0].Leader != ""
	}, 30*time.Second, 250*time.Millisecond, "last: %s", body)
	require.Equal(t, "a", v.Node)
	var names []string
	for _, n := range v.Nodes {
		require.False(t, n.Lost, n.Name)
		names = append(names, n.Name)
	}
	require.ElementsMatch(t, []string{"a", "b", "c"}, names)
	events := v.Streams[0]
	require.Equal(t, "EVENTS", events.Name)
	require.Contains(t, names, events.Leader)
	var remotes []string
	for _, l := range v.Links {
		require.Equal(t, "route", l.Kind, "%+v", l)
		if !slices.Contains(remotes, l.Remote) {
			remotes = append(remotes, l.Remote)
		}
	}
	require.ElementsMatch(t, []string{"b", "c"}, remotes, "a's routes")
	t.Logf("EVENTS: %d replicas, leader %s, peers %v; a's links: %d", events.Replicas, events.Leader, events.Peers, len(v.Links))

	// The page, in Chromium, with the token pasted.
	b := browser.Start(t, browser.RequireChromium(t))
	tab := b.Open(t, a.HTTPURL()+"/cluster.html")
	_, err := browser.Eval[bool](tab, 5*time.Second, fmt.Sprintf(`(() => { const i = document.getElementById("token"); i.value = %q; i.dispatchEvent(new Event("change")); return true; })()`, admin))
	require.NoError(t, err)
	rows := func(sel string) []string {
		r, _ := browser.Eval[[]string](tab, 5*time.Second, `[...document.querySelectorAll("`+sel+`")].map((r) => r.dataset.node ?? r.dataset.stream ?? r.dataset.remote)`)
		return r
	}
	require.Eventually(t, func() bool { return len(rows("#nodes tbody tr")) == 3 }, 20*time.Second, 250*time.Millisecond,
		"page: %s\nconsole:\n%v", tab.Text("status"), tab.Console())
	require.ElementsMatch(t, []string{"a", "b", "c"}, rows("#nodes tbody tr"))
	require.Contains(t, rows("#streams tbody tr"), "EVENTS")
	require.Subset(t, rows("#links tbody tr"), []string{"b", "c"})
	empties, err := browser.Eval[[]string](tab, 5*time.Second, `["#edges", "#forgotten"].map((t) => document.querySelector(t + " tbody tr.empty")?.textContent ?? "")`)
	require.NoError(t, err)
	require.Contains(t, empties[0], "No edge", "routed nodes only: the edges' empty state")
	require.Contains(t, empties[1], "No edge forgotten")

	// c stops: it withdraws its lease (a node that dies instead is shown lost once its lease
	// lapses), and both the JSON and the page stop showing it as a live node.
	require.NoError(t, nodes[2].Close())
	live := func() []string {
		var out []string
		for _, n := range v.Nodes {
			if !n.Lost {
				out = append(out, n.Name)
			}
		}
		slices.Sort(out)
		return out
	}
	require.Eventually(t, func() bool {
		status, v, body = getCluster(t, a.HTTPURL(), admin)
		return status == http.StatusOK && slices.Equal(live(), []string{"a", "b"})
	}, 30*time.Second, 250*time.Millisecond, "last: %d %s", status, body)
	require.Eventually(t, func() bool {
		shown, _ := browser.Eval[[]string](tab, 5*time.Second, `[...document.querySelectorAll("#nodes tbody tr:not(.lost)")].map((r) => r.dataset.node)`)
		slices.Sort(shown)
		return slices.Equal(shown, []string{"a", "b"})
	}, 20*time.Second, 250*time.Millisecond, "page: %s", tab.Text("status"))
}

// TestClusterConsoleForget: a region node (a hub) and edge1, a leaf with its own JetStream
// domain run as a child process. The console page lists the edge with when the region last
// heard from its log, and no forgotten edge; its Forget asks for the edge's name and shows
// the server's answer: refused while the edge runs (409), unknown once the region's log no
// longer copies it (404, here by removing the source behind the page's back), and after
// SIGKILL of the edge, forgotten, with the ended sessions' count; the edge then moves to the
// forgotten edges, by the token's identity.
func TestClusterConsoleForget(t *testing.T) {
	hub, edge, _ := startChildEdge(t)
	js := hub.JetStream()
	ctx := ctxT(t, 3*time.Minute)
	admin := token(t, auth.AnyRoom, "ops", auth.Admin)

	// The API the page reads: the edge, its node name from its default domain, and the
	// region hearing from its log.
	var v clusterapi.View
	var status int
	var body string
	require.Eventually(t, func() bool {
		status, v, body = getCluster(t, hub.HTTPURL(), admin)
		return status == http.StatusOK && len(v.EdgeSources) == 1 && v.EdgeSources[0].Active >= 0
	}, 30*time.Second, 250*time.Millisecond, "the region sources the edge's log: %d %s", status, body)
	require.Equal(t, []string{"edge-edge1"}, v.Edges)
	es := v.EdgeSources[0]
	require.Equal(t, "edge-edge1", es.Domain)
	require.Equal(t, "edge1", es.Node)
	require.Less(t, es.Active, 5*time.Second, "the source's heartbeat comes every second")
	require.Empty(t, es.Error)
	require.Empty(t, v.Forgotten)

	// Without Chromium (and outside CI) the API's part above still ran.
	b := browser.Start(t, browser.RequireChromium(t))
	tab := b.Open(t, hub.HTTPURL()+"/cluster.html")
	eval := func(expr string) string {
		t.Helper()
		s, err := browser.Eval[string](tab, 5*time.Second, expr)
		require.NoError(t, err, "%s\nconsole:\n%v", expr, tab.Console())
		return s
	}
	eval(fmt.Sprintf(`(() => { const i = document.getElementById("token"); i.value = %q; i.dispatchEvent(new Event("change")); return ""; })()`, admin))
	edgeRow := `document.querySelector('#edges tbody tr[data-edge="edge-edge1"]')`
	require.Eventually(t, func() bool { return eval(`(`+edgeRow+`?.dataset.node ?? "")`) == "edge1" },
		20*time.Second, 250*time.Millisecond, "page: %s\nconsole:\n%v", tab.Text("status"), tab.Console())
	require.Contains(t, eval(edgeRow+`.textContent`), "heard from")
	require.Equal(t, "empty", eval(`document.querySelector("#forgotten tbody tr").className`), "no forgotten edge yet")

	// forgetVia opens the row's Forget, checks that another name does not confirm, types
	// the edge's and confirms; it returns the page's answer once it has one.
	forgetVia := func() (string, string) {
		t.Helper()
		eval(`(() => { ` + edgeRow + `.querySelector("button.forget").click(); return ""; })()`)
		require.Equal(t, "true", eval(`String(document.getElementById("forget-dialog").open)`))
		typeName := func(name string) string {
			return eval(fmt.Sprintf(`(() => { const i = document.getElementById("forget-name"); i.value = %q; i.dispatchEvent(new Event("input")); return String(document.getElementById("forget-confirm").disabled); })()`, name))
		}
		require.Equal(t, "true", typeName("edge"), "a name that is not the edge's does not confirm")
		require.Equal(t, "false", typeName("edge1"))
		eval(`(() => { document.getElementById("forget-result").dataset.status = ""; document.getElementById("forget-confirm").click(); return ""; })()`)
		var st string
		require.Eventually(t, func() bool {
			st = eval(`document.getElementById("forget-result").dataset.status ?? ""`)
			return st != "" && st != "pending"
		}, 45*time.Second, 100*time.Millisecond, "the page shows the forget's answer: %s", tab.Text("forget-result"))
		require.Equal(t, "false", eval(`String(document.getElementById("forget-dialog").open)`))
		return st, tab.Text("forget-result")
	}

	st, text := forgetVia()
	require.Equal(t, "409", st, text)
	require.Contains(t, text, "stop it first")
	_, found, err := presence.EdgeForgotten(ctx, js, "edge-edge1")
	require.NoError(t, err)
	require.False(t, found, "a refused forget records nothing")

	edge.kill()

	// The row is stale once the region's log stops copying the edge without a forget: 404.
	eval(`(() => { document.getElementById("auto").checked = false; return ""; })()`)
	removed, err := eventlog.RemoveEdgeSource(ctx, js, "edge-edge1")
	require.NoError(t, err)
	require.True(t, removed)
	st, text = forgetVia()
	require.Equal(t, "404", st, text)
	require.Contains(t, text, "Unknown edge")
	_, err = eventlog.AddEdgeSource(ctx, js, "edge-edge1")
	require.NoError(t, err)
	eval(`(() => { document.getElementById("auto").checked = true; return ""; })()`)
	require.Eventually(t, func() bool { return eval(`(`+edgeRow+`?.dataset.node ?? "")`) == "edge1" },
		20*time.Second, 250*time.Millisecond, "the edge is listed again: %s", tab.Text("status"))

	st, text = forgetVia()
	require.Equal(t, "200", st, text)
	require.Contains(t, text, "forgotten by ops")
	require.Contains(t, text, "sessions ended in the region's log: 0 in 0 room(s)")
	require.Equal(t, "0", eval(`document.getElementById("forget-result").dataset.ended ?? ""`))
	t.Logf("the page's answer:\n%s", text)

	require.Eventually(t, func() bool {
		return eval(`document.querySelector('#forgotten tbody tr[data-forgotten="edge-edge1"]')?.dataset.by ?? ""`) == "ops"
	}, 20*time.Second, 250*time.Millisecond, "the page lists the forgotten edge: %s", tab.Text("status"))
	require.Equal(t, "empty", eval(`document.querySelector("#edges tbody tr").className`), "no edge left")
	sourced, err := eventlog.EdgeSourced(ctx, js, "edge-edge1")
	require.NoError(t, err)
	require.False(t, sourced)
}
