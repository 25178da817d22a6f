package tests

import (
	"context"
	"encoding/json"
	"net/http"
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
	a, b := startRoutedPair(t, "rm1", "rm2")
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
	for _, n := range []*app.Node{a, b} {
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
