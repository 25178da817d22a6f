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
	"github.com/jetmedia/jetmedia/projections/clusterapi"
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
