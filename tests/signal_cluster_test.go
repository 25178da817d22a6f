package tests

import (
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/cmd/jetmedia/app"
	"github.com/jetmedia/jetmedia/events"
	"github.com/jetmedia/jetmedia/ingress/signal"
	"github.com/jetmedia/jetmedia/ingress/signal/client"
	"github.com/jetmedia/jetmedia/pipeline/auth"
)

// TestSDKAcrossNodes: two SDK peers of one room on two nodes (b a media-only leaf of hub a).
// Room events come from the shared KV state, media crosses on the track subjects and data
// messages on the room's data subjects, so each sees and hears the other as on one node.
func TestSDKAcrossNodes(t *testing.T) {
	a, b := startLeafPair(t)
	room := newRoom("sdkx")
	ctx := ctxT(t, 60*time.Second)

	alice := joinSDK(t, ctx, a, room, "alice", true)
	bob := joinSDK(t, ctx, b, room, "bob", true)
	ida, idb := alice.room.Self.Peer, bob.room.Self.Peer
	require.Eventually(t, func() bool {
		j := alice.seen(client.PeerJoined)
		return len(j) == 1 && j[0].Peer.Peer == idb
	}, 10*time.Second, 10*time.Millisecond, "alice on a sees bob join on b")
	require.Eventually(t, func() bool { return alice.received(idb) > 30 && bob.received(ida) > 30 },
		20*time.Second, 20*time.Millisecond, "media both ways (a got %d, b got %d)", alice.received(idb), bob.received(ida))

	require.NoError(t, bob.room.Send("from the edge", ida))
	require.NoError(t, alice.room.Send("from the hub", ""))
	require.Eventually(t, func() bool {
		return len(alice.seen(client.Data)) == 1 && len(bob.seen(client.Data)) == 1
	}, 5*time.Second, 10*time.Millisecond)
	require.Equal(t, "from the edge", alice.seen(client.Data)[0].Payload)
	require.Equal(t, "from the hub", bob.seen(client.Data)[0].Payload)

	// Bob's connection drops for good (no leave, no resume): once the resume grace (10 s by
	// default) is over the room sees him go, with reason "disconnected".
	bob.stopSend()
	require.NoError(t, bob.room.Close())
	require.Eventually(t, func() bool {
		l := alice.seen(client.PeerLeft)
		return len(l) == 1 && l[0].Peer.Peer == idb
	}, 30*time.Second, 10*time.Millisecond)
	var reasons []string
	for _, e := range roomEvents(t, a.JetStream(), room) {
		if e.Type == events.TypePeerLeft {
			p, err := e.Payload()
			require.NoError(t, err)
			reasons = append(reasons, p.(events.PeerLeft).Peer+":"+p.(events.PeerLeft).Reason)
			require.Equal(t, "bob", e.Actor)
		}
	}
	require.Equal(t, []string{idb + ":disconnected"}, reasons)
}

// TestSDKRedirect: node a admits one session and holds one; a Go SDK client that joins at a
// is sent to b by a redirect message (once a has read b's lease; until then a full a
// answers full, which the client retries) and joins there. It also covers the redirect
// message for the signalling coverage check (validated against its schema).
func TestSDKRedirect(t *testing.T) {
	a, b := startRoutedPairWith(t, "a", "b", func(i int, cfg *app.Config) {
		if i == 0 {
			cfg.MaxSessions = 1
		}
	})
	room := newRoom("sdkredir")
	ctx := ctxT(t, 60*time.Second)
	joinSDK(t, ctx, a, room, "first", false)

	tok := token(t, room, "redirected", auth.Subscribe, auth.Data)
	var r *client.Room
	var err error
	require.Eventually(t, func() bool {
		r, err = client.Join(ctx, sdkURL(a), tok, client.Options{API: clientAPI(t), Trace: wire.trace})
		var se *client.Error
		if errors.As(err, &se) && se.Code == signal.CodeFull {
			return false
		}
		require.NoError(t, err)
		return true
	}, 20*time.Second, 300*time.Millisecond)
	defer r.Close()
	var nodes []string
	for _, e := range roomEvents(t, b.JetStream(), room) {
		if e.Type != events.TypePeerJoined {
			continue
		}
		p, err := e.Payload()
		require.NoError(t, err)
		if pj := p.(events.PeerJoined); pj.Identity == "redirected" {
			nodes = append(nodes, pj.Node)
		}
	}
	require.Equal(t, []string{"b"}, nodes, "joined once, on b")
	require.Positive(t, wire.requireValid(t)["server.redirect"], "a redirect message on the wire")
}
