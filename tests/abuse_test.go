package tests

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/cmd/jetmedia/app"
	"github.com/jetmedia/jetmedia/events"
	"github.com/jetmedia/jetmedia/ingress/signal"
	"github.com/jetmedia/jetmedia/ingress/signal/client"
	"github.com/jetmedia/jetmedia/pipeline/auth"
)

// floodResult is what a flooding client saw: the error codes it got, how long from its first
// message until the server closed its socket, and its peer id.
type floodResult struct {
	codes   map[string]int
	elapsed time.Duration
	peer    string
}

// flood joins room with tok over a raw WebSocket and sends n messages (made by msg) as fast as
// the socket takes them, reading everything the server says until it closes the socket.
func flood(t *testing.T, ctx context.Context, node *app.Node, tok string, n int, msg func(i int) signal.ClientMessage) floodResult {
	t.Helper()
	c := dialRaw(t, ctx, node)
	c.send(ctx, signal.ClientMessage{Type: signal.TypeJoin, Version: signal.Version, Token: tok})
	joined := c.read(ctx, signal.TypeJoined)
	res := floodResult{codes: map[string]int{}, peer: joined.Self.Peer}
	var mu sync.Mutex
	closed := make(chan struct{})
	go func() {
		defer close(closed)
		for {
			_, b, err := c.ws.Read(ctx)
			if err != nil {
				return
			}
			wire.trace(true, b)
			var m signal.ServerMessage
			if json.Unmarshal(b, &m) == nil && m.Type == signal.TypeError {
				mu.Lock()
				res.codes[m.Code]++
				mu.Unlock()
			}
		}
	}()
	start := time.Now()
	for i := range n {
		b, err := json.Marshal(msg(i))
		require.NoError(t, err)
		wire.trace(false, b)
		if c.ws.Write(ctx, websocket.MessageText, b) != nil {
			break // the server closed the socket
		}
	}
	select {
	case <-closed:
	case <-ctx.Done():
		t.Fatal("the server did not close the flooding client's socket")
	}
	res.elapsed = time.Since(start)
	mu.Lock()
	defer mu.Unlock()
	return res
}

// TestSignalFloodRateLimited: a subscribe-only token flooding update, mute and data gets
// forbidden and not_found, then rate_limited errors, and is disconnected; nothing of it but
// its join and leave reaches the log. A token allowed to update and send data gets at most the
// configured rates through: peer.updated events in the log and data messages at another peer.
func TestSignalFloodRateLimited(t *testing.T) {
	node := startNode(t, nodeConfig(t, "flood"))
	room := newRoom("flood")
	ctx := ctxT(t, 60*time.Second)
	lim := signal.DefaultLimits()
	bob := joinSDK(t, ctx, node, room, "bob", false)

	payload := "hello"
	viewer := flood(t, ctx, node, token(t, room, "viewer", auth.Subscribe), 3000, func(i int) signal.ClientMessage {
		switch i % 3 {
		case 0:
			return signal.ClientMessage{Type: signal.TypeUpdate, Metadata: fmt.Sprint(i)}
		case 1:
			muted := i%2 == 0
			return signal.ClientMessage{Type: signal.TypeMute, Track: "t", Muted: &muted}
		}
		return signal.ClientMessage{Type: signal.TypeData, Payload: &payload}
	})
	t.Logf("subscribe-only flood: errors %v, disconnected after %v", viewer.codes, viewer.elapsed)
	require.Positive(t, viewer.codes[signal.CodeForbidden], "update and data without their grants")
	require.Positive(t, viewer.codes[signal.CodeNotFound], "mute of a track it does not publish")
	require.Positive(t, viewer.codes[signal.CodeRateLimited])
	require.LessOrEqual(t, viewer.codes[signal.CodeRateLimited], lim.Excess.Burst+int(lim.Excess.PerSecond*viewer.elapsed.Seconds())+1)

	chatty := flood(t, ctx, node, token(t, room, "chatty", auth.Subscribe, auth.Metadata, auth.Data), 3000, func(i int) signal.ClientMessage {
		if i%2 == 0 {
			return signal.ClientMessage{Type: signal.TypeUpdate, Metadata: fmt.Sprint(i)}
		}
		return signal.ClientMessage{Type: signal.TypeData, Payload: &payload}
	})
	t.Logf("metadata+data flood: errors %v, disconnected after %v", chatty.codes, chatty.elapsed)
	require.Positive(t, chatty.codes[signal.CodeRateLimited])

	require.NoError(t, node.WaitProjected(ctx))
	byType := map[string]map[string]int{}
	for _, e := range roomEvents(t, node.JetStream(), room) {
		if byType[e.Actor] == nil {
			byType[e.Actor] = map[string]int{}
		}
		byType[e.Actor][e.Type]++
		if e.Type == events.TypePeerLeft && (e.Actor == "viewer" || e.Actor == "chatty") {
			p, err := e.Payload()
			require.NoError(t, err)
			require.Equal(t, "kicked", p.(events.PeerLeft).Reason)
		}
	}
	t.Logf("events by actor: %v", byType)
	require.Equal(t, map[string]int{events.TypePeerJoined: 1, events.TypePeerLeft: 1}, byType["viewer"])
	updates := byType["chatty"][events.TypePeerUpdated]
	allowed := lim.Events.Burst + int(lim.Events.PerSecond*chatty.elapsed.Seconds()) + 1
	require.Positive(t, updates)
	require.LessOrEqual(t, updates, allowed, "peer.updated events over %v", chatty.elapsed)

	// Data: what bob got from chatty (settled: no more arrive once chatty is gone).
	fromChatty := func() int {
		n := 0
		for _, e := range bob.seen(client.Data) {
			if e.From == chatty.peer {
				n++
			}
		}
		return n
	}
	require.Eventually(t, func() bool { return fromChatty() > 0 }, 10*time.Second, 10*time.Millisecond)
	time.Sleep(200 * time.Millisecond)
	require.LessOrEqual(t, fromChatty(), lim.Data.Burst+int(lim.Data.PerSecond*chatty.elapsed.Seconds())+1)
	t.Logf("peer.updated recorded: %d (allowed %d); data messages delivered: %d", updates, allowed, fromChatty())
}
