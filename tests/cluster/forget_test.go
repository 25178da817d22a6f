package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/cmd/jetmedia/app"
	"github.com/jetmedia/jetmedia/events"
	"github.com/jetmedia/jetmedia/pipeline/auth"
	"github.com/jetmedia/jetmedia/pipeline/eventlog"
	"github.com/jetmedia/jetmedia/projections/logtools"
	"github.com/jetmedia/jetmedia/projections/presence"
	"github.com/jetmedia/jetmedia/tests/rtcclient"
	"github.com/jetmedia/jetmedia/tests/testlog"
)

// TestForgetDeadEdge: region1 (a hub) and edge1, a leaf with its own JetStream domain run as
// a child process; a publisher on the edge, a WHEP viewer of it on the region. Forgetting an
// unknown node and the live edge is refused. After SIGKILL of the edge, `cluster forget`
// (POST /v1/cluster/nodes/edge1/forget) ends the publisher in the region's log once, with the
// node-lost events; the region's viewer ends; every room's chain holds; the rooms bucket
// equals a rebuild from the log; a second forget writes nothing; the edge restarted on its
// data logs an error and does not source its log into the region's again.
func TestForgetDeadEdge(t *testing.T) {
	hub, edge, ec := startChildEdge(t)
	js := hub.JetStream()
	ctx := ctxT(t, 4*time.Minute)
	waitEdgeSourced(t, ctx, js)

	cv, err := logtools.ReadCluster(ctx, js, time.Now())
	require.NoError(t, err)
	require.Equal(t, []string{"edge-edge1"}, cv.Edges, "jetmedia cluster lists the edge")

	status, body := forget(t, hub.HTTPURL(), "nosuch")
	require.Equal(t, http.StatusNotFound, status, body)

	room := newRoom("forget")
	published, tracks, viewer := edgePublisherRegionViewer(t, ctx, hub, edge, room)

	status, body = forget(t, hub.HTTPURL(), "edge1")
	require.Equal(t, http.StatusConflict, status, "a live edge is not forgotten: %s", body)
	// Nor under a name its node does not run under, its domain given: the domain holds
	// another node's live lease.
	status, body = forgetDomain(t, hub.HTTPURL(), "wrongname", "edge-edge1")
	require.Equal(t, http.StatusConflict, status, "a live edge is not forgotten under another name: %s", body)
	require.Contains(t, body, "node edge1 renewed its lease")
	_, found, err := presence.EdgeForgotten(ctx, js, "edge-edge1")
	require.NoError(t, err)
	require.False(t, found, "a refused forget records nothing")

	edge.kill()
	killed := time.Now()
	status, body = forget(t, hub.HTTPURL(), "edge1")
	require.Equal(t, http.StatusOK, status, body)
	t.Logf("kill -> forget answered: %.2f s; %s", time.Since(killed).Seconds(), body)
	var res presence.ForgetResult
	require.NoError(t, json.Unmarshal([]byte(body), &res))
	require.False(t, res.Already)
	require.True(t, res.SourceRemoved)
	require.Equal(t, 1, res.Ended)
	require.Equal(t, "ops", res.By, "the token's identity")
	sourced, err := eventlog.EdgeSourced(ctx, js, "edge-edge1")
	require.NoError(t, err)
	require.False(t, sourced, "the region's log no longer sources the edge's")

	cv, err = logtools.ReadCluster(ctx, js, time.Now())
	require.NoError(t, err)
	require.Empty(t, cv.Edges)
	require.Len(t, cv.Forgotten, 1, "jetmedia cluster lists the forgotten edge")
	require.Equal(t, "edge1", cv.Forgotten[0].Node)

	requireEndedOnce(t, roomEvents(t, js, room), published, tracks, "edge1")
	require.Eventually(t, func() bool { return leftReason(t, roomEvents(t, js, room), viewer) != "" },
		20*time.Second, 200*time.Millisecond, "the region's viewer of the forgotten publisher ends")
	t.Logf("the region's viewer ended (reason %s) %.2f s after the kill", leftReason(t, roomEvents(t, js, room), viewer),
		time.Since(killed).Seconds())
	requireChainsHold(t, js)
	requireRebuildEqual(t, hub)

	// A second forget, straight through the library as the command line does it: no-op.
	before := lastSeq(t, js)
	again, err := presence.Forget(ctx, js, presence.ForgetRequest{Node: "edge1", By: "someone-else", Writer: "test"})
	require.NoError(t, err)
	require.True(t, again.Noop(), "%+v", again)
	require.Equal(t, "ops", again.By, "the first forget's record stays")
	require.Equal(t, before, lastSeq(t, js), "a second forget writes nothing")

	// The edge restarted on its data is told it was forgotten and stays out.
	logs := &testlog.Capture{Min: slog.LevelError}
	ec.Logger = slog.New(logs)
	startNodes(t, ec)
	require.Eventually(t, func() bool { return logs.Has("the region forgot this edge") },
		20*time.Second, 100*time.Millisecond, "the restarted edge logs that it was forgotten")
	time.Sleep(3 * time.Second) // it checks at start, then every minute: an add would show by now
	sourced, err = eventlog.EdgeSourced(ctx, js, "edge-edge1")
	require.NoError(t, err)
	require.False(t, sourced, "a forgotten edge does not source its log again")
	require.Equal(t, before, lastSeq(t, js), "nothing of the restarted edge reaches the region's log")
}

// TestEdgeLostAfter: with --edge-lost-after on the region's node, an edge killed while it
// serves a publisher (a region viewer plays it) is forgotten by the region without an
// operator: the publisher's session ends in the region's log once, with the node-lost events,
// within the 15 s of the kill; the forgotten record names the policy; the region's
// viewer ends.
func TestEdgeLostAfter(t *testing.T) {
	const after = 2 * 3 * time.Second // two of killLease's TTLs, the least the flag takes
	hub, edge, _ := startChildEdge(t, func(c *app.Config) { c.EdgeLostAfter = after })
	js := hub.JetStream()
	ctx := ctxT(t, 3*time.Minute)
	waitEdgeSourced(t, ctx, js)
	room := newRoom("edgelost")
	published, tracks, viewer := edgePublisherRegionViewer(t, ctx, hub, edge, room)
	// A live edge stays: three checks' worth past the policy's wait.
	time.Sleep(after + 3*time.Second)
	_, found, err := presence.EdgeForgotten(ctx, js, "edge-edge1")
	require.NoError(t, err)
	require.False(t, found, "a live edge is not forgotten")

	edge.kill()
	killed := time.Now()
	require.Eventually(t, func() bool { return leftReason(t, roomEvents(t, js, room), published) != "" },
		15*time.Second, 200*time.Millisecond, "the killed edge's publisher ends in the region's log within 15 s, no operator")
	t.Logf("kill -> the edge's publisher ended in the region's log: %.2f s (--edge-lost-after %v)", time.Since(killed).Seconds(), after)
	rec, found, err := presence.EdgeForgotten(ctx, js, "edge-edge1")
	require.NoError(t, err)
	require.True(t, found)
	require.Contains(t, rec.By, "--edge-lost-after")
	requireEndedOnce(t, roomEvents(t, js, room), published, tracks, "edge1")
	require.Eventually(t, func() bool { return leftReason(t, roomEvents(t, js, room), viewer) != "" },
		20*time.Second, 200*time.Millisecond, "the region's viewer of the lost edge's publisher ends")
	requireChainsHold(t, js)
	requireRebuildEqual(t, hub)
}

// waitEdgeSourced waits until the region's log (js) sources edge1's.
func waitEdgeSourced(t *testing.T, ctx context.Context, js jetstream.JetStream) {
	t.Helper()
	require.Eventually(t, func() bool {
		ok, err := eventlog.EdgeSourced(ctx, js, "edge-edge1")
		return err == nil && ok
	}, 30*time.Second, 100*time.Millisecond, "the region's log sources the edge's")
}

// edgePublisherRegionViewer publishes in room on the edge and plays it on the hub (both closed
// at the end of the test); it returns the publisher's peer and tracks and the viewer's peer,
// as the region's rooms bucket shows them.
func edgePublisherRegionViewer(t *testing.T, ctx context.Context, hub *app.Node, edge *child, room string) (published string, tracks []string, viewer string) {
	t.Helper()
	api := clientAPI(t)
	pub, err := rtcclient.Publish(ctx, api, edge.url, room, asPublisher(t, room))
	require.NoError(t, err)
	t.Cleanup(func() { _ = pub.Close(false) })
	waitTracks(t, hub, room, 2)
	peers := peersOnNode(t, hub, room, "edge1")
	require.Len(t, peers, 1)
	v, err := rtcclient.Play(ctx, api, hub.HTTPURL(), room, asViewer(t, room))
	require.NoError(t, err)
	t.Cleanup(func() { _ = v.Close() })
	require.Eventually(t, func() bool { return v.Video.Load() > 30 && v.Audio.Load() > 30 },
		20*time.Second, 20*time.Millisecond, "the region's viewer plays the edge's publisher")
	viewers := viewersByPublisher(t, hub, room)[peers[0]]
	require.Len(t, viewers, 1)
	return peers[0], tracksOf(t, hub, room, peers[0]), viewers[0]
}

// startChildEdge starts region1, a node of the region (a hub: --leaf-listen), and edge1, a
// leaf with its own JetStream domain run as a child process (so that a test can kill it), both
// with the kill tests' short lease and without placement, and waits for the edge's HTTP; ec
// is the edge's configuration, to start it again in the test's process; hubEdits change the
// hub's configuration.
func startChildEdge(t *testing.T, hubEdits ...func(*app.Config)) (hub *app.Node, edge *child, ec app.Config) {
	t.Helper()
	hc := nodeConfig(t, "region1")
	hc.LeafListen, hc.Presence, hc.Placement = "127.0.0.1:0", killLease, false
	for _, edit := range hubEdits {
		edit(&hc)
	}
	hub = startNodes(t, hc)[0]
	ec = nodeConfig(t, "edge1")
	ec.Hub, ec.HTTPAddr = hub.Server().LeafURL(), "127.0.0.1:"+strconv.Itoa(freePorts(t, 1)[0])
	ec.Presence, ec.Placement = killLease, false
	edge = startChild(t, ec)
	edge.waitUp(t)
	return hub, edge, ec
}

// forget posts a forget of node to a node's HTTP API with an admin token.
func forget(t *testing.T, base, node string) (int, string) {
	t.Helper()
	return forgetDomain(t, base, node, "")
}

// forgetDomain is forget naming the edge's JetStream domain (none: the default).
func forgetDomain(t *testing.T, base, node, domain string) (int, string) {
	t.Helper()
	var body []byte
	if domain != "" {
		body = []byte(`{"domain":"` + domain + `"}`)
	}
	req, err := http.NewRequestWithContext(ctxT(t, time.Minute), http.MethodPost, base+"/v1/cluster/nodes/"+node+"/forget", bytes.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+token(t, auth.AnyRoom, "ops", auth.Admin))
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, strings.TrimSpace(string(b))
}

// leftReason is the reason of peer's peer.left in evs, "" if it has none.
func leftReason(t *testing.T, evs []events.Envelope, peer string) string {
	for _, e := range evs {
		p, err := e.Payload()
		require.NoError(t, err)
		if l, ok := p.(events.PeerLeft); ok && l.Peer == peer {
			return l.Reason
		}
	}
	return ""
}

// lastSeq is the sequence of the newest event in the log js reaches.
func lastSeq(t *testing.T, js jetstream.JetStream) uint64 {
	t.Helper()
	s, err := js.Stream(ctxT(t, 10*time.Second), eventlog.StreamEvents)
	require.NoError(t, err)
	info, err := s.Info(ctxT(t, 10*time.Second))
	require.NoError(t, err)
	return info.State.LastSeq
}
