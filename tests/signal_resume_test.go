package tests

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/pion/webrtc/v4"
	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/cmd/jetmedia/app"
	"github.com/jetmedia/jetmedia/events"
	"github.com/jetmedia/jetmedia/ingress/signal"
	"github.com/jetmedia/jetmedia/ingress/signal/client"
	"github.com/jetmedia/jetmedia/pipeline/auth"
	"github.com/jetmedia/jetmedia/projections"
)

// requireRoomIsFoldOfLog: the room's KV state equals the fold of its log, and every event
// validates against its schema.
func requireRoomIsFoldOfLog(t *testing.T, ctx context.Context, node *app.Node, room string) (projections.Room, []events.Envelope) {
	t.Helper()
	require.NoError(t, node.WaitProjected(ctx))
	log := roomEvents(t, node.JetStream(), room)
	live, err := projections.LoadRoom(ctx, node.Rooms(), room)
	require.NoError(t, err)
	folded, err := projections.FoldAll(room, log)
	require.NoError(t, err)
	requireSameRoom(t, folded, live)
	require.Positive(t, requireSchemaValid(t, node.JetStream()))
	return live, log
}

func ofType(log []events.Envelope, typ string) []events.Envelope {
	var out []events.Envelope
	for _, e := range log {
		if e.Type == typ {
			out = append(out, e)
		}
	}
	return out
}

// TestSDKMuteAndMetadata: join metadata, publish source and muted reach the other peer's
// snapshot; mute and metadata updates are events with the actor's identity and reach the others
// as track_updated and peer_updated; bad values get clear errors.
func TestSDKMuteAndMetadata(t *testing.T) {
	node := startNode(t, nodeConfig(t, "mute"))
	room := newRoom("mute")
	ctx := ctxT(t, 60*time.Second)

	alice := joinSDKWith(t, ctx, node, room, "alice", client.Options{Metadata: `{"seat":1}`}, &client.PublishOptions{Source: "camera", Muted: true})
	track, err := alice.room.TrackID(ctx, alice.sender)
	require.NoError(t, err)
	bob := joinSDK(t, ctx, node, room, "bob", false)
	require.Equal(t, []signal.PeerInfo{{Peer: alice.room.Self.Peer, Identity: "alice", Transport: "sdk", Metadata: `{"seat":1}`}}, bob.room.Peers)
	require.Len(t, bob.room.Tracks, 1)
	require.Equal(t, signal.TrackInfo{Track: track, Peer: alice.room.Self.Peer, Kind: "video", Codec: "video/VP8", Source: "camera", Muted: true, Layers: []string{"0"}}, bob.room.Tracks[0])

	// Unmute: both see it (the publisher too).
	require.NoError(t, alice.room.Mute(ctx, alice.sender, false))
	for _, p := range []*sdkPeer{alice, bob} {
		require.Eventually(t, func() bool { return len(p.seen(client.TrackUpdated)) == 1 }, 10*time.Second, 10*time.Millisecond)
		e := p.seen(client.TrackUpdated)[0]
		require.Equal(t, track, e.Track.Track)
		require.False(t, e.Track.Muted)
		require.Equal(t, "camera", e.Track.Source)
	}
	require.NoError(t, alice.room.Mute(ctx, alice.sender, true))
	require.Eventually(t, func() bool {
		u := bob.seen(client.TrackUpdated)
		return len(u) == 2 && u[1].Track.Muted
	}, 10*time.Second, 10*time.Millisecond)

	// Metadata: the others see it, the peer itself gets no echo.
	require.NoError(t, alice.room.UpdateMetadata(`{"seat":2}`))
	require.Eventually(t, func() bool { return len(bob.seen(client.PeerUpdated)) == 1 }, 10*time.Second, 10*time.Millisecond)
	require.Equal(t, signal.PeerInfo{Peer: alice.room.Self.Peer, Identity: "alice", Transport: "sdk", Metadata: `{"seat":2}`}, bob.seen(client.PeerUpdated)[0].Peer)
	peers, tracks := bob.room.State()
	require.Equal(t, `{"seat":2}`, peers[0].Metadata)
	require.True(t, tracks[0].Muted)

	// Bad values.
	require.Error(t, alice.room.UpdateMetadata(strings.Repeat("x", signal.MaxMetadata+1)), "the SDK refuses it before sending")
	long, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, "audio", "x")
	require.NoError(t, err)
	wire.expectInvalid(`{"type":"publish","kind":"audio","source":"` + strings.Repeat("s", signal.MaxSource+1) + `"}`)
	_, err = bob.room.PublishWith(long, client.PublishOptions{Source: strings.Repeat("s", signal.MaxSource+1)})
	require.NoError(t, err)
	require.Eventually(t, func() bool { return len(bob.seen(client.ErrorEvent)) == 1 }, 10*time.Second, 10*time.Millisecond)
	ev := bob.seen(client.ErrorEvent)[0]
	require.Equal(t, signal.CodeBadRequest, ev.Code)
	require.Contains(t, ev.Message, "source")
	carolTok := token(t, room, "carol", auth.Subscribe)
	wire.expectInvalid(`{"type":"join","version":1,"token":"` + carolTok + `","metadata":"` + strings.Repeat("m", signal.MaxMetadata+1) + `","auto_subscribe":true}`)
	_, err = client.Join(ctx, sdkURL(node), carolTok, client.Options{API: clientAPI(t), Trace: wire.trace,
		Metadata: strings.Repeat("m", signal.MaxMetadata+1)})
	var ce *client.Error
	require.ErrorAs(t, err, &ce)
	require.Equal(t, signal.CodeBadRequest, ce.Code)
	require.Contains(t, ce.Message, "metadata")

	alice.stopSend()
	require.NoError(t, alice.room.Leave())
	require.NoError(t, bob.room.Leave())

	_, log := requireRoomIsFoldOfLog(t, ctx, node, room)
	var mutes []bool
	for _, e := range ofType(log, events.TypeTrackUpdated) {
		require.Equal(t, "alice", e.Actor)
		p, err := e.Payload()
		require.NoError(t, err)
		require.Equal(t, track, p.(events.TrackUpdated).Track)
		mutes = append(mutes, p.(events.TrackUpdated).Muted)
	}
	require.Equal(t, []bool{false, true}, mutes)
	upd := ofType(log, events.TypePeerUpdated)
	require.Len(t, upd, 1)
	require.Equal(t, "alice", upd[0].Actor)
	pub := ofType(log, events.TypeTrackPublished)
	require.Len(t, pub, 1)
	p, err := pub[0].Payload()
	require.NoError(t, err)
	require.Equal(t, "camera", p.(events.TrackPublished).Source)
	require.True(t, p.(events.TrackPublished).Muted)
	j, err := ofType(log, events.TypePeerJoined)[0].Payload()
	require.NoError(t, err)
	require.Equal(t, `{"seat":1}`, j.(events.PeerJoined).Metadata)
	wire.requireValid(t)
}

// TestSDKResume: a peer's WebSocket drops; within the grace it resumes. The other peers never
// see it leave, its media keeps flowing both ways, what changed meanwhile (a metadata update,
// a new peer and track) reaches it from the resumed snapshot, the new track is offered on the
// new socket, and the log holds one join and no leave for it until it really leaves.
func TestSDKResume(t *testing.T) {
	node := startNode(t, nodeConfig(t, "resume"))
	room := newRoom("resume")
	ctx := ctxT(t, 90*time.Second)

	alice := joinSDK(t, ctx, node, room, "alice", true)
	bob := joinSDK(t, ctx, node, room, "bob", true)
	ida, idb := alice.room.Self.Peer, bob.room.Self.Peer
	require.Eventually(t, func() bool { return alice.received(idb) > 30 && bob.received(ida) > 30 },
		20*time.Second, 20*time.Millisecond, "media both ways before the drop")

	const away = 1500 * time.Millisecond
	dropAt := time.Now()
	bob.room.DropConnection(away)
	require.Eventually(t, func() bool { return len(bob.seen(client.Reconnecting)) == 1 }, 5*time.Second, 10*time.Millisecond)
	// While bob is away: alice changes her metadata, carol joins and publishes, and bob's
	// media still reaches alice.
	before := alice.received(idb)
	require.NoError(t, alice.room.UpdateMetadata("away-test"))
	carol := joinSDK(t, ctx, node, room, "carol", true)
	idc := carol.room.Self.Peer
	require.Eventually(t, func() bool { return alice.received(idb) > before+15 }, 10*time.Second, 20*time.Millisecond,
		"bob's media keeps arriving while his socket is gone")

	require.Eventually(t, func() bool { return len(bob.seen(client.Reconnected)) == 1 }, 15*time.Second, 10*time.Millisecond)
	require.Empty(t, bob.seen(client.ErrorEvent))
	t.Logf("resume took %v after the first attempt (socket away for %v)", bob.seen(client.Reconnected)[0].At.Sub(dropAt)-away, away)
	// The resumed snapshot told bob what he missed.
	require.Eventually(t, func() bool {
		for _, e := range bob.seen(client.PeerUpdated) {
			if e.Peer.Peer == ida && e.Peer.Metadata == "away-test" {
				return true
			}
		}
		return false
	}, 5*time.Second, 10*time.Millisecond, "bob learns alice's new metadata")
	var joined []string // alice may be among them: bob's first snapshot can precede her KV record
	for _, e := range bob.seen(client.PeerJoined) {
		joined = append(joined, e.Peer.Peer)
	}
	require.Equal(t, 1, strings.Count(strings.Join(joined, " "), idc), "bob learns of carol once: %v", joined)
	// Media after the resume: alice's keeps coming, carol's track is offered on the new socket.
	after := bob.received(ida)
	require.Eventually(t, func() bool { return bob.received(ida) > after+15 && bob.received(idc) > 30 }, 20*time.Second, 20*time.Millisecond,
		"bob receives alice (got %d more) and carol (got %d) after resuming", bob.received(ida)-after, bob.received(idc))
	// The new socket carries bob's requests too.
	require.NoError(t, bob.room.Mute(ctx, bob.sender, true))
	require.Eventually(t, func() bool { return len(alice.seen(client.TrackUpdated)) == 1 }, 10*time.Second, 10*time.Millisecond)

	for _, p := range []*sdkPeer{alice, carol} {
		for _, e := range p.seen(client.PeerLeft) {
			require.NotEqual(t, idb, e.Peer.Peer, "the room never saw bob leave")
		}
	}
	require.NoError(t, node.WaitProjected(ctx))
	live, err := projections.LoadRoom(ctx, node.Rooms(), room)
	require.NoError(t, err)
	require.Contains(t, live.Peers, idb)
	var bobEvents []string
	for _, e := range roomEvents(t, node.JetStream(), room) {
		if e.Actor == "bob" {
			bobEvents = append(bobEvents, e.Type)
		}
	}
	require.NotContains(t, bobEvents, events.TypePeerLeft)
	require.Len(t, ofType(roomEvents(t, node.JetStream(), room), events.TypePeerJoined), 3, "bob joined once")

	for _, p := range []*sdkPeer{alice, bob, carol} {
		p.stopSend()
		require.NoError(t, p.room.Leave())
	}
	live, log := requireRoomIsFoldOfLog(t, ctx, node, room)
	require.Empty(t, live.Peers)
	for _, e := range ofType(log, events.TypePeerLeft) {
		p, err := e.Payload()
		require.NoError(t, err)
		require.Equal(t, "closed", p.(events.PeerLeft).Reason, "every peer left by leave, none by the drop")
	}
	seen := wire.requireValid(t)
	require.Positive(t, seen["client.join"])
	require.Positive(t, seen["server.candidate"], "the server trickles its candidates")
}

// TestSDKResumeExpired: a peer whose socket stays away longer than the grace leaves (its track
// unpublished, peer.left disconnected, the others see both); its late resume gets
// resume_expired and the SDK ends the room.
func TestSDKResumeExpired(t *testing.T) {
	cfg := nodeConfig(t, "expire")
	cfg.ResumeGrace = 2 * time.Second
	node := startNode(t, cfg)
	room := newRoom("expire")
	ctx := ctxT(t, 60*time.Second)

	alice := joinSDK(t, ctx, node, room, "alice", false)
	bob := joinSDK(t, ctx, node, room, "bob", true)
	idb := bob.room.Self.Peer
	require.Eventually(t, func() bool { return alice.received(idb) > 30 }, 20*time.Second, 20*time.Millisecond)

	bob.room.DropConnection(5 * time.Second)
	require.Eventually(t, func() bool {
		l := alice.seen(client.PeerLeft)
		return len(l) == 1 && l[0].Peer.Peer == idb && len(alice.seen(client.TrackUnpublished)) == 1
	}, 15*time.Second, 10*time.Millisecond, "alice sees bob leave once the grace is over")
	require.Eventually(t, func() bool {
		for _, e := range bob.seen(client.ErrorEvent) {
			if e.Code == signal.CodeResumeExpired {
				return true
			}
		}
		return false
	}, 15*time.Second, 10*time.Millisecond, "bob's late resume is refused")
	require.Empty(t, bob.seen(client.Reconnected))
	bob.stopSend()
	select {
	case _, ok := <-bob.room.Events():
		for ok {
			_, ok = <-bob.room.Events()
		}
	case <-time.After(10 * time.Second):
		t.Fatal("bob's room did not end after resume_expired")
	}

	require.NoError(t, alice.room.Leave())
	_, log := requireRoomIsFoldOfLog(t, ctx, node, room)
	var reasons []string
	for _, e := range ofType(log, events.TypePeerLeft) {
		p, err := e.Payload()
		require.NoError(t, err)
		reasons = append(reasons, e.Actor+":"+p.(events.PeerLeft).Reason)
	}
	require.Equal(t, []string{"bob:disconnected", "alice:closed"}, reasons)
	require.Len(t, ofType(log, events.TypeTrackUnpublished), 1)
	wire.requireValid(t)
}

// TestSignalClientOffer speaks the protocol without the SDK, as a browser may: the client
// offers (a receive-only m-line) and trickles its candidates; the server answers. Also a
// resume with a token of no session, a join that is not first, and a wrong resume token.
func TestSignalClientOffer(t *testing.T) {
	wire.ran(t)
	node := startNode(t, nodeConfig(t, "offer"))
	room := newRoom("offer")
	ctx := ctxT(t, 60*time.Second)
	tok := token(t, room, "raw", auth.Subscribe)

	ws, _, err := websocket.Dial(ctx, sdkURL(node), nil)
	require.NoError(t, err)
	defer ws.CloseNow()
	var wmu sync.Mutex
	send := func(m any) {
		b, err := json.Marshal(m)
		require.NoError(t, err)
		wire.trace(false, b)
		wmu.Lock()
		defer wmu.Unlock()
		require.NoError(t, ws.Write(ctx, websocket.MessageText, b))
	}
	read := func(typ string) signal.ServerMessage {
		for {
			_, b, err := ws.Read(ctx)
			require.NoError(t, err)
			wire.trace(true, b)
			var m signal.ServerMessage
			require.NoError(t, json.Unmarshal(b, &m))
			if m.Type == typ {
				return m
			}
		}
	}
	send(signal.ClientMessage{Type: signal.TypeJoin, Version: signal.Version, Token: tok})
	joined := read(signal.TypeJoined)
	require.NotEmpty(t, joined.ResumeToken)

	pc, err := clientAPI(t).NewPeerConnection(webrtc.Configuration{})
	require.NoError(t, err)
	defer pc.Close()
	_, err = pc.AddTransceiverFromKind(webrtc.RTPCodecTypeVideo, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly})
	require.NoError(t, err)
	cands := make(chan webrtc.ICECandidateInit, 16)
	pc.OnICECandidate(func(c *webrtc.ICECandidate) {
		if c != nil {
			cands <- c.ToJSON()
		}
	})
	offer, err := pc.CreateOffer(nil)
	require.NoError(t, err)
	require.NoError(t, pc.SetLocalDescription(offer))
	send(signal.ClientMessage{Type: signal.TypeOffer, SDP: offer.SDP})
	select {
	case c := <-cands:
		b, err := json.Marshal(c)
		require.NoError(t, err)
		send(signal.ClientMessage{Type: signal.TypeCandidate, Candidate: b})
	case <-time.After(10 * time.Second):
		t.Fatal("no local candidate to trickle")
	}
	answer := read(signal.TypeAnswer)
	require.NoError(t, pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer.SDP}))
	connected := make(chan struct{})
	var once sync.Once
	pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
		if s == webrtc.PeerConnectionStateConnected {
			once.Do(func() { close(connected) })
		}
	})
	select {
	case <-connected:
	case <-time.After(20 * time.Second):
		t.Fatal("client-offered PeerConnection did not connect")
	}
	send(signal.ClientMessage{Type: signal.TypeJoin, Version: signal.Version, Token: tok})
	require.Equal(t, signal.CodeBadRequest, read(signal.TypeError).Code, "join twice")

	// Resumes that cannot work, each on its own socket.
	resume := func(tok, resumeToken string) signal.ServerMessage {
		w, _, err := websocket.Dial(ctx, sdkURL(node), nil)
		require.NoError(t, err)
		defer w.CloseNow()
		b, err := json.Marshal(signal.ClientMessage{Type: signal.TypeJoin, Version: signal.Version, Token: tok, Resume: resumeToken})
		require.NoError(t, err)
		wire.trace(false, b)
		require.NoError(t, w.Write(ctx, websocket.MessageText, b))
		_, b, err = w.Read(ctx)
		require.NoError(t, err)
		wire.trace(true, b)
		var m signal.ServerMessage
		require.NoError(t, json.Unmarshal(b, &m))
		return m
	}
	m := resume(tok, "nosuchpeer.secret")
	require.Equal(t, signal.CodeResumeExpired, m.Code)
	peer, _, _ := strings.Cut(joined.ResumeToken, ".")
	m = resume(tok, peer+".guessed")
	require.Equal(t, signal.CodeUnauthorized, m.Code)
	m = resume(token(t, room, "mallory", auth.Subscribe), joined.ResumeToken)
	require.Equal(t, signal.CodeForbidden, m.Code, "another identity cannot take the session")

	send(signal.ClientMessage{Type: signal.TypeLeave})
	_, _, err = ws.Read(ctx)
	require.Error(t, err, "the server closes the socket after leave")
	_, log := requireRoomIsFoldOfLog(t, ctx, node, room)
	require.Len(t, ofType(log, events.TypePeerJoined), 1)
	require.Len(t, ofType(log, events.TypePeerLeft), 1)
	wire.requireValid(t)
}

// TestSDKShutdownEndsDetachedSession: a node that stops ends every rooms session, the one
// waiting for a resume too: both peers leave with reason shutdown.
func TestSDKShutdownEndsDetachedSession(t *testing.T) {
	cfg := nodeConfig(t, "shut")
	cfg.ResumeGrace = time.Minute
	node := startNode(t, cfg)
	room := newRoom("shut")
	ctx := ctxT(t, 60*time.Second)
	alice := joinSDK(t, ctx, node, room, "alice", true)
	bob := joinSDK(t, ctx, node, room, "bob", false)
	require.Eventually(t, func() bool { return bob.received(alice.room.Self.Peer) > 10 }, 20*time.Second, 20*time.Millisecond)
	bob.room.DropConnection(time.Minute)
	require.Eventually(t, func() bool { return len(bob.seen(client.Reconnecting)) == 1 }, 5*time.Second, 10*time.Millisecond)
	// Give the server a moment to see the drop (no API shows a session as detached; the
	// core's decisions are TestCoreResume's), then stop the node.
	time.Sleep(300 * time.Millisecond)
	require.NoError(t, node.Close())
	alice.stopSend()

	var reasons []string
	for _, e := range eventsOf(t, room, cfg) {
		if e.Type == events.TypePeerLeft {
			p, err := e.Payload()
			require.NoError(t, err)
			reasons = append(reasons, e.Actor+":"+p.(events.PeerLeft).Reason)
		}
	}
	require.ElementsMatch(t, []string{"alice:shutdown", "bob:shutdown"}, reasons)
}

// rawClient speaks the protocol over one WebSocket without the SDK; every message goes through
// the wire log.
type rawClient struct {
	t  *testing.T
	ws *websocket.Conn
}

func dialRaw(t *testing.T, ctx context.Context, node *app.Node) *rawClient {
	ws, _, err := websocket.Dial(ctx, sdkURL(node), nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = ws.CloseNow() })
	return &rawClient{t: t, ws: ws}
}

func (c *rawClient) send(ctx context.Context, m signal.ClientMessage) {
	b, err := json.Marshal(m)
	require.NoError(c.t, err)
	wire.trace(false, b)
	require.NoError(c.t, c.ws.Write(ctx, websocket.MessageText, b))
}

// read returns the next message of type typ, skipping others.
func (c *rawClient) read(ctx context.Context, typ string) signal.ServerMessage {
	for {
		_, b, err := c.ws.Read(ctx)
		require.NoError(c.t, err, "waiting for %s", typ)
		wire.trace(true, b)
		var m signal.ServerMessage
		require.NoError(c.t, json.Unmarshal(b, &m))
		if m.Type == typ {
			return m
		}
	}
}

// TestSignalResumeResendsOffer: a server offer that was never answered when the socket dropped
// comes again on the resumed socket, and answering it there brings the media.
func TestSignalResumeResendsOffer(t *testing.T) {
	wire.ran(t)
	node := startNode(t, nodeConfig(t, "reoffer"))
	room := newRoom("reoffer")
	ctx := ctxT(t, 60*time.Second)
	alice := joinSDK(t, ctx, node, room, "alice", true)
	_, err := alice.room.TrackID(ctx, alice.sender)
	require.NoError(t, err)

	tok := token(t, room, "raw", auth.Subscribe)
	first := dialRaw(t, ctx, node)
	first.send(ctx, signal.ClientMessage{Type: signal.TypeJoin, Version: signal.Version, Token: tok})
	joined := first.read(ctx, signal.TypeJoined)
	offer := first.read(ctx, signal.TypeOffer) // alice's track, auto-subscribed
	require.NoError(t, first.ws.CloseNow())    // dropped before answering

	again := dialRaw(t, ctx, node)
	again.send(ctx, signal.ClientMessage{Type: signal.TypeJoin, Version: signal.Version, Token: tok, Resume: joined.ResumeToken})
	resumed := again.read(ctx, signal.TypeJoined)
	require.True(t, resumed.Resumed)
	require.Equal(t, joined.Self.Peer, resumed.Self.Peer)
	reoffer := again.read(ctx, signal.TypeOffer)
	require.Equal(t, offer.SDP, reoffer.SDP, "the unanswered offer, again")

	pc, err := clientAPI(t).NewPeerConnection(webrtc.Configuration{})
	require.NoError(t, err)
	defer pc.Close()
	var got atomic.Int64
	pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		buf := make([]byte, 1500)
		for {
			if _, _, err := tr.Read(buf); err != nil {
				return
			}
			got.Add(1)
		}
	})
	require.NoError(t, pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: reoffer.SDP}))
	ans, err := pc.CreateAnswer(nil)
	require.NoError(t, err)
	gathered := webrtc.GatheringCompletePromise(pc)
	require.NoError(t, pc.SetLocalDescription(ans))
	<-gathered
	again.send(ctx, signal.ClientMessage{Type: signal.TypeAnswer, SDP: pc.LocalDescription().SDP})
	require.Eventually(t, func() bool { return got.Load() > 30 }, 20*time.Second, 20*time.Millisecond, "media after answering on the resumed socket")

	again.send(ctx, signal.ClientMessage{Type: signal.TypeLeave})
	alice.stopSend()
	require.NoError(t, alice.room.Leave())
	_, log := requireRoomIsFoldOfLog(t, ctx, node, room)
	require.Len(t, ofType(log, events.TypePeerJoined), 2, "the resume is no new join")
	wire.requireValid(t)
}
