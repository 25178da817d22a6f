package tests

import (
	"errors"
	"log/slog"
	"net/http"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/events"
	"github.com/jetmedia/jetmedia/ingress/signal"
	"github.com/jetmedia/jetmedia/ingress/signal/client"
	"github.com/jetmedia/jetmedia/pipeline/auth"
	"github.com/jetmedia/jetmedia/pipeline/eventlog"
	"github.com/jetmedia/jetmedia/projections"
	"github.com/jetmedia/jetmedia/projections/presence"
	"github.com/jetmedia/jetmedia/tests/leasefault"
	"github.com/jetmedia/jetmedia/tests/rtcclient"
	"github.com/jetmedia/jetmedia/tests/testlog"
)

// TestLostWhileAliveEndsOwnSessions: node a serves a WHIP publisher, a WHEP viewer of it and a
// room SDK peer when its lease renewals fail (the nodes bucket refuses them: its largest
// message is lowered under a lease's size) for longer than the others wait, and another node
// takes a for lost and ends a's sessions in the log (presence.End naming a, through another
// appender), while a lives on. a says its lease lapsed; within a few seconds of the ends a
// ends the sessions itself (the WHIP and WHEP resources are
// gone, the clients' PeerConnections stop being connected, the SDK client is told to join
// again), says so in a warning, and the log holds one peer.left per peer: a writes no second
// one.
func TestLostWhileAliveEndsOwnSessions(t *testing.T) {
	if testing.Short() {
		t.Skip("real peers")
	}
	warnings := &testlog.Capture{Min: slog.LevelWarn}
	cfg := nodeConfig(t, "a")
	cfg.Logger = slog.New(warnings)
	cfg.Presence = presence.Timing{Renew: 500 * time.Millisecond, TTL: 3 * time.Second, Recheck: 10 * time.Second}
	a := startNode(t, cfg)
	api := clientAPI(t)
	room := newRoom("selfend")
	ctx := ctxT(t, 90*time.Second)

	pub, err := rtcclient.Publish(ctx, api, a.HTTPURL(), room, asPublisher(t, room))
	require.NoError(t, err)
	defer pub.Close(false)
	require.Eventually(t, func() bool {
		r, err := projections.LoadRoom(ctx, a.Rooms(), room)
		return err == nil && len(r.Tracks) == 2
	}, 15*time.Second, 20*time.Millisecond, "the publisher's tracks in the bucket")
	viewer, err := rtcclient.Play(ctx, api, a.HTTPURL(), room, asViewer(t, room))
	require.NoError(t, err)
	defer viewer.Close()
	require.Eventually(t, func() bool { return viewer.Video.Load() > 30 }, 15*time.Second, 20*time.Millisecond)
	sdk, err := client.Join(ctx, sdkURL(a), token(t, room, "sam", auth.Subscribe), client.Options{API: api})
	require.NoError(t, err)
	defer sdk.Close()
	sdkErrors := make(chan []client.Event, 1)
	go func() {
		var errs []client.Event
		for e := range sdk.Events() {
			if e.Type == client.ErrorEvent {
				errs = append(errs, e)
			}
		}
		sdkErrors <- errs
	}()
	require.Eventually(t, func() bool { return len(peersOn(t, a, room, "a")) == 3 }, 10*time.Second, 20*time.Millisecond)
	peers := peersOn(t, a, room, "a")
	// Both sessions live through several of a's checks before anything is ended.
	time.Sleep(2 * cfg.Presence.Renew)
	require.Equal(t, 1, a.Sessions(events.TransportWHIP))
	require.Equal(t, 1, a.Sessions(events.TransportWHEP))
	require.Equal(t, 1, a.Sessions(signal.Transport))
	require.Empty(t, warnings.Matching("the log ended this session"))
	require.Empty(t, warnings.Matching("lease went unrenewed"))

	// a's renewals are refused: once they have been for longer than the others wait, a knows
	// it may be taken for lost. Its sessions go on meanwhile.
	restore := leasefault.Refuse(ctx, t, a.JetStream())
	defer restore()
	require.Eventually(t, func() bool { return len(warnings.Matching("lease went unrenewed")) > 0 },
		cfg.Presence.TTL+5*time.Second, 20*time.Millisecond, "a says its lease lapsed")
	require.Equal(t, 1, a.Sessions(events.TransportWHIP))

	lost := func(_ projections.Room, node string) bool { return node == "a" }
	ending := func(node string) presence.Ending {
		return presence.Ending{By: "survivor", Detail: "node " + node + " lost: lease expired", Time: time.Now()}
	}
	n, err := presence.End(ctx, a.Rooms(), eventlog.NewAppender(a.JetStream(), "survivor"), lost, ending)
	require.NoError(t, err)
	require.Equal(t, 3, n)
	endedInLog := time.Now()

	require.Eventually(t, func() bool { return a.Sessions(events.TransportWHIP) == 0 }, 3*cfg.Presence.Renew+5*time.Second,
		10*time.Millisecond, "a ended its publisher within a few seconds")
	t.Logf("ended in the log -> a's WHIP session closed: %v (checked every %v)", time.Since(endedInLog).Round(time.Millisecond), cfg.Presence.Renew)
	require.Eventually(t, func() bool { return a.Sessions(events.TransportWHEP) == 0 }, 3*cfg.Presence.Renew+5*time.Second,
		10*time.Millisecond, "a ended its viewer")
	t.Logf("ended in the log -> a's WHEP session closed: %v", time.Since(endedInLog).Round(time.Millisecond))
	require.Eventually(t, func() bool { return a.Sessions(signal.Transport) == 0 }, 3*cfg.Presence.Renew+5*time.Second,
		10*time.Millisecond, "a ended its room SDK peer")
	t.Logf("ended in the log -> a's room SDK session closed: %v", time.Since(endedInLog).Round(time.Millisecond))
	select {
	case errs := <-sdkErrors:
		require.NotEmpty(t, errs)
		require.Equal(t, signal.CodeResumeExpired, errs[0].Code, "%+v", errs)
		t.Logf("the SDK client was told: %s %q", errs[0].Code, errs[0].Message)
	case <-time.After(15 * time.Second):
		t.Fatal("the SDK client's room did not end")
	}
	for loc, tok := range map[string]string{pub.Location: token(t, room, publisherIdentity, auth.Publish),
		viewer.Location: token(t, room, viewerIdentity, auth.Subscribe)} {
		err := rtcclient.Delete(ctx, http.DefaultClient, loc, tok)
		var he *rtcclient.HTTPError
		require.True(t, errors.As(err, &he), "%v", err)
		require.Equal(t, http.StatusNotFound, he.Status, "the session at %s is gone", loc)
	}
	notConnected := func(pc *webrtc.PeerConnection) func() bool {
		return func() bool { return pc.ConnectionState() != webrtc.PeerConnectionStateConnected }
	}
	require.Eventually(t, notConnected(pub.PC), 20*time.Second, 20*time.Millisecond, "the publisher's PeerConnection ends")
	require.Eventually(t, notConnected(viewer.PC), 20*time.Second, 20*time.Millisecond, "the viewer's PeerConnection ends")
	t.Logf("ended in the log -> both clients' PeerConnections no longer connected: %v", time.Since(endedInLog).Round(time.Millisecond))
	t.Logf("warnings that the log ended a session: %d", len(warnings.Matching("the log ended this session")))
	require.GreaterOrEqual(t, len(warnings.Matching("the log ended this session")), 2,
		"a warning per session a ended (the publisher, the SDK peer; the viewer may end first with its tracks)")

	// a's checks go on: nothing more is written.
	time.Sleep(3 * cfg.Presence.Renew)
	left, ended := map[string]int{}, map[string]int{}
	for _, e := range roomEvents(t, a.JetStream(), room) {
		p, err := e.Payload()
		require.NoError(t, err)
		switch p := p.(type) {
		case events.PeerLeft:
			left[p.Peer]++
			t.Logf("peer.left %s reason %s", p.Peer, p.Reason)
		case events.TrackUnpublished:
			ended["track "+p.Track]++
		case events.SubscriptionEnded:
			ended["sub "+p.Peer+" "+p.Track]++
		}
	}
	require.Equal(t, map[string]int{peers[0]: 1, peers[1]: 1, peers[2]: 1}, left, "one peer.left per peer")
	for what, n := range ended {
		require.Equal(t, 1, n, "%s ended once", what)
	}
	requireRebuildEqual(t, a)
}
