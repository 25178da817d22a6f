package tests

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/cmd/jetmedia/app"
	"github.com/jetmedia/jetmedia/events"
	"github.com/jetmedia/jetmedia/pipeline/auth"
	"github.com/jetmedia/jetmedia/projections"
	"github.com/jetmedia/jetmedia/tests/rtcclient"
)

// TestReadModelsOnEveryNode: a real WHIP publisher on one node of a two-node cluster and a
// WHEP viewer on the other. Each node's own read models see every event: the audit index
// lists each token identity's sessions (the actor is the token's identity) and the analytics
// count both peers, on both nodes, over HTTP with an admin token.
func TestReadModelsOnEveryNode(t *testing.T) {
	ports := freePorts(t, 2)
	routes := []string{"nats://127.0.0.1:" + strconv.Itoa(ports[0]), "nats://127.0.0.1:" + strconv.Itoa(ports[1])}
	cfgs := make([]app.Config, 2)
	for i, name := range []string{"rm1", "rm2"} {
		cfgs[i] = nodeConfig(t, name)
		cfgs[i].NATSListen = "127.0.0.1:0"
		cfgs[i].ClusterListen = "127.0.0.1:" + strconv.Itoa(ports[i])
		cfgs[i].Routes = routes
	}
	nodes := make([]*app.Node, 2)
	errs := make([]error, 2)
	var wg sync.WaitGroup
	for i := range cfgs {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			nodes[i], errs[i] = app.Start(ctx, cfgs[i])
		})
	}
	wg.Wait()
	for i := range nodes {
		if nodes[i] != nil {
			t.Cleanup(func() { _ = nodes[i].Close() })
		}
		require.NoError(t, errs[i])
	}
	a, b := nodes[0], nodes[1]
	api := clientAPI(t)
	room := newRoom("rm")
	ctx := ctxT(t, 60*time.Second)
	pub, err := rtcclient.Publish(ctx, api, a.HTTPURL(), room, asPublisher(t, room))
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		r, err := projections.LoadRoom(ctx, b.Rooms(), room)
		return err == nil && len(r.Tracks) == 2
	}, 15*time.Second, 20*time.Millisecond)
	v, err := rtcclient.Play(ctx, api, b.HTTPURL(), room, asViewer(t, room))
	require.NoError(t, err)
	require.Eventually(t, func() bool { return v.Video.Load() > 10 }, 15*time.Second, 20*time.Millisecond)
	v.Close()
	pub.Close(true)
	require.Eventually(t, func() bool {
		r, err := projections.LoadRoom(ctx, a.Rooms(), room)
		return err == nil && len(r.Peers) == 0
	}, 15*time.Second, 20*time.Millisecond)

	admin := token(t, auth.AnyRoom, "ops", auth.Admin)
	getJSON := func(n *app.Node, path string, v any) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, n.HTTPURL()+path, nil)
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+admin)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer func() { _ = resp.Body.Close() }()
		require.Equal(t, http.StatusOK, resp.StatusCode, path)
		require.NoError(t, json.NewDecoder(resp.Body).Decode(v))
	}
	for _, n := range nodes {
		wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		require.NoError(t, n.WaitReadModels(wctx), n.Name())
		cancel()
		var f projections.RoomFigures
		getJSON(n, "/v1/analytics/rooms/"+room, &f)
		require.Equal(t, 2, f.PeakConcurrent, n.Name())
		require.Zero(t, f.CurrentPeers, n.Name())
		require.Positive(t, f.ParticipantMinutes, n.Name())
		require.Positive(t, f.PublishMinutes["video"], n.Name())
		require.Positive(t, f.PublishMinutes["audio"], n.Name())
		joins, leaves := 0, 0
		for _, h := range f.Hours { // a test may straddle an hour
			joins, leaves = joins+h.Joins, leaves+h.Leaves
		}
		require.Equal(t, [2]int{2, 2}, [2]int{joins, leaves}, n.Name())
		for _, who := range []string{publisherIdentity, viewerIdentity} {
			var refs []projections.AuditRef
			getJSON(n, "/v1/audit/who?identity="+who, &refs)
			types := map[string]bool{}
			for _, r := range refs {
				if r.Room == room {
					types[r.Type] = true
				}
			}
			require.True(t, types[events.TypePeerJoined], "%s on %s: %v", who, n.Name(), types)
			require.True(t, types[events.TypePeerLeft], "%s on %s: %v", who, n.Name(), types)
		}
	}
}
