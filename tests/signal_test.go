package tests

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/cmd/jetmedia/app"
	"github.com/jetmedia/jetmedia/events"
	"github.com/jetmedia/jetmedia/ingress/signal/client"
	"github.com/jetmedia/jetmedia/pipeline/auth"
	"github.com/jetmedia/jetmedia/projections"
	"github.com/jetmedia/jetmedia/schemas"
)

// wireLog keeps every signalling message of a test, to validate them against the schemas.
type wireLog struct {
	mu    sync.Mutex
	msgs  []wireMsg
	tests map[string]bool // tests that traced messages
	// invalid: messages a test sends on purpose to see the server refuse them; they must
	// fail their schema.
	invalid map[string]bool
}

// expectInvalid marks raw as a message sent on purpose against the schema.
func (w *wireLog) expectInvalid(raw string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.invalid == nil {
		w.invalid = map[string]bool{}
	}
	w.invalid[raw] = true
}

type wireMsg struct {
	fromServer bool
	raw        []byte
}

func (w *wireLog) trace(fromServer bool, raw []byte) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.msgs = append(w.msgs, wireMsg{fromServer, append([]byte(nil), raw...)})
}

// requireValid validates every message seen against schemas/signal and returns how many of
// each "<direction>.<type>" there were.
func (w *wireLog) requireValid(t *testing.T) map[string]int {
	t.Helper()
	v, err := schemas.NewSignal()
	require.NoError(t, err)
	w.mu.Lock()
	defer w.mu.Unlock()
	seen := map[string]int{}
	for _, m := range w.msgs {
		dir := schemas.FromClient
		if m.fromServer {
			dir = schemas.FromServer
		}
		if w.invalid[string(m.raw)] {
			require.Error(t, v.Validate(dir, m.raw), "%s message %s was sent as invalid", dir, m.raw)
			continue
		}
		require.NoError(t, v.Validate(dir, m.raw), "%s message %s", dir, m.raw)
		var typ struct{ Type string }
		require.NoError(t, json.Unmarshal(m.raw, &typ))
		seen[dir+"."+typ.Type]++
	}
	return seen
}

var wire = &wireLog{}

// ran notes that a test contributed messages, so that TestMain knows whether the whole set of
// signalling tests ran (and must have covered every message type).
func (w *wireLog) ran(t *testing.T) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.tests == nil {
		w.tests = map[string]bool{}
	}
	name, _, _ := strings.Cut(t.Name(), "/")
	w.tests[name] = true
}

// coverageTests are the tests that together send every signalling message type.
var coverageTests = []string{"TestSDKRoom", "TestSDKManualSubscribe", "TestSDKMuteAndMetadata", "TestSDKResume",
	"TestSDKResumeExpired", "TestSignalClientOffer", "TestSDKSpeakers", "TestSDKRedirect", "TestBrowserSDKLayersPaused"}

// missingTypes returns the message types ("<direction>.<type>") with a schema that no test
// sent, or ok=false when not every coverage test ran (a -run filter).
func (w *wireLog) missingTypes() (missing []string, ok bool, err error) {
	w.mu.Lock()
	for _, name := range coverageTests {
		if !w.tests[name] {
			w.mu.Unlock()
			return nil, false, nil
		}
	}
	w.mu.Unlock()
	v, err := schemas.NewSignal()
	if err != nil {
		return nil, true, err
	}
	seen := map[string]bool{}
	w.mu.Lock()
	for _, m := range w.msgs {
		dir := schemas.FromClient
		if m.fromServer {
			dir = schemas.FromServer
		}
		var typ struct{ Type string }
		if json.Unmarshal(m.raw, &typ) == nil {
			seen[dir+"."+typ.Type] = true
		}
	}
	w.mu.Unlock()
	for _, name := range v.Messages() {
		if !seen[name] {
			missing = append(missing, name)
		}
	}
	return missing, true, nil
}

const debugSDK = false

// sdkPeer is one SDK client of a test: its room, the RTP it received per publishing peer and
// the events it saw.
type sdkPeer struct {
	room *client.Room

	mu       sync.Mutex
	got      map[string]*atomic.Int64 // publisher peer → RTP packets received
	events   []client.Event
	stopSend context.CancelFunc
	sender   *webrtc.RTPSender // of the published track
}

func (p *sdkPeer) received(peer string) int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	if c := p.got[peer]; c != nil {
		return c.Load()
	}
	return 0
}

// seen returns the events of type typ seen so far.
func (p *sdkPeer) seen(typ client.EventType) []client.Event {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []client.Event
	for _, e := range p.events {
		if e.Type == typ {
			out = append(out, e)
		}
	}
	return out
}

func sdkURL(n *app.Node) string { return n.HTTPURL() + "/rtc" }

// joinSDK joins room as identity with every grant and, when publish is set, sends a synthetic
// VP8 track.
func joinSDK(t *testing.T, ctx context.Context, node *app.Node, room, identity string, publish bool) *sdkPeer {
	t.Helper()
	var pub *client.PublishOptions
	if publish {
		pub = &client.PublishOptions{Source: "camera"}
	}
	return joinSDKWith(t, ctx, node, room, identity, client.Options{}, pub)
}

// joinSDKWith is joinSDK with SDK options and, when pub is set, a VP8 track published with it.
func joinSDKWith(t *testing.T, ctx context.Context, node *app.Node, room, identity string, opts client.Options, pub *client.PublishOptions) *sdkPeer {
	t.Helper()
	wire.ran(t)
	tok := token(t, room, identity, auth.Publish, auth.Subscribe, auth.Data)
	opts.API = clientAPI(t)
	opts.Trace = func(fromServer bool, raw []byte) {
		wire.trace(fromServer, raw)
		if debugSDK {
			var m struct{ Type, SDP string }
			_ = json.Unmarshal(raw, &m)
			t.Logf("%s %s fromServer=%v %s mlines=%d", time.Now().Format("05.000"), identity, fromServer, m.Type, strings.Count(m.SDP, "m="))
		}
	}
	r, err := client.Join(ctx, sdkURL(node), tok, opts)
	require.NoError(t, err)
	p := &sdkPeer{room: r, got: map[string]*atomic.Int64{}}
	r.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		p.mu.Lock()
		c := p.got[tr.StreamID()]
		if c == nil {
			c = &atomic.Int64{}
			p.got[tr.StreamID()] = c
		}
		p.mu.Unlock()
		buf := make([]byte, 1500)
		for {
			if _, _, err := tr.Read(buf); err != nil {
				return
			}
			c.Add(1)
		}
	})
	go func() {
		for e := range r.Events() {
			p.mu.Lock()
			p.events = append(p.events, e)
			p.mu.Unlock()
		}
	}()
	sctx, cancel := context.WithCancel(context.Background())
	p.stopSend = cancel
	t.Cleanup(func() { cancel(); _ = r.Close() })
	if pub != nil {
		track, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, "video", identity)
		require.NoError(t, err)
		p.sender, err = r.PublishWith(track, *pub)
		require.NoError(t, err)
		go sendVP8(sctx, track)
	}
	return p
}

// sendVP8 writes synthetic VP8 RTP at 30 frames/s, a keyframe every 30 frames.
func sendVP8(ctx context.Context, track *webrtc.TrackLocalStaticRTP) {
	tk := time.NewTicker(time.Second / 30)
	defer tk.Stop()
	payload := make([]byte, 800)
	var seq uint16
	var ts uint32
	for frame := 0; ; frame++ {
		select {
		case <-ctx.Done():
			return
		case <-tk.C:
		}
		payload[0] = 0x10
		payload[1] = 0x01
		if frame%30 == 0 {
			payload[1] = 0x00
		}
		seq++
		ts += 3000
		_ = track.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, Marker: true, SequenceNumber: seq, Timestamp: ts}, Payload: payload})
	}
}

// TestSDKRoom: three SDK clients join a room, publish a VP8 track each and receive the other
// two; joins, leaves and data messages reach exactly who they should; bad tokens are refused;
// the room's events validate and its KV state equals the fold of its log.
func TestSDKRoom(t *testing.T) {
	node := startNode(t, nodeConfig(t, "sdk"))
	room := newRoom("sdk")
	ctx := ctxT(t, 90*time.Second)

	a := joinSDK(t, ctx, node, room, "alice", true)
	b := joinSDK(t, ctx, node, room, "bob", true)
	c := joinSDK(t, ctx, node, room, "carol", true)
	peers := []*sdkPeer{a, b, c}
	ids := []string{a.room.Self.Peer, b.room.Self.Peer, c.room.Self.Peer}
	require.Equal(t, "alice", a.room.Self.Identity)
	require.ElementsMatch(t, []string{"publish", "subscribe", "data"}, a.room.Grants)

	// Every peer hears of the ones that joined after it.
	require.Eventually(t, func() bool {
		return len(a.seen(client.PeerJoined)) >= 2 && len(b.seen(client.PeerJoined)) >= 1
	}, 10*time.Second, 10*time.Millisecond)
	joinedA := []string{}
	for _, e := range a.seen(client.PeerJoined) {
		joinedA = append(joinedA, e.Peer.Peer)
	}
	require.ElementsMatch(t, ids[1:], joinedA)

	// Every peer receives the other two's media, and not its own.
	for i, p := range peers {
		for j, id := range ids {
			if i == j {
				continue
			}
			require.Eventually(t, func() bool { return p.received(id) > 30 }, 20*time.Second, 20*time.Millisecond,
				"peer %d receives peer %d's track (got %d; errors %v; transceivers %d)", i, j, p.received(id),
				[][]client.Event{a.seen(client.ErrorEvent), b.seen(client.ErrorEvent), c.seen(client.ErrorEvent)}, len(p.room.PeerConnection().GetTransceivers()))
		}
		require.Zero(t, p.received(ids[i]), "peer %d gets its own track back", i)
	}

	// Data: to the room reaches the two others; to one peer reaches only that one.
	require.NoError(t, a.room.Send("hello room", ""))
	require.NoError(t, b.room.Send("psst carol", ids[2]))
	require.Eventually(t, func() bool {
		return len(b.seen(client.Data)) >= 1 && len(c.seen(client.Data)) >= 2
	}, 5*time.Second, 10*time.Millisecond)
	time.Sleep(200 * time.Millisecond) // let stray deliveries arrive, if any
	require.Empty(t, a.seen(client.Data), "the sender does not get its own room message")
	bd := b.seen(client.Data)
	require.Len(t, bd, 1)
	require.Equal(t, client.Event{Type: client.Data, At: bd[0].At, From: ids[0], Payload: "hello room"}, bd[0])
	payloads := []string{}
	for _, e := range c.seen(client.Data) {
		payloads = append(payloads, e.From+":"+e.Payload+":"+e.To)
	}
	require.ElementsMatch(t, []string{ids[0] + ":hello room:", ids[1] + ":psst carol:" + ids[2]}, payloads)
	// To a peer that is not in the room: an error, nothing sent.
	require.NoError(t, a.room.Send("x", "nobody"))
	require.Eventually(t, func() bool { return len(a.seen(client.ErrorEvent)) == 1 }, 5*time.Second, 10*time.Millisecond)
	require.Equal(t, "not_found", a.seen(client.ErrorEvent)[0].Code)

	// Carol leaves: the others see her and her track go.
	c.stopSend()
	require.NoError(t, c.room.Leave())
	for _, p := range []*sdkPeer{a, b} {
		require.Eventually(t, func() bool {
			left := p.seen(client.PeerLeft)
			unpub := p.seen(client.TrackUnpublished)
			return len(left) == 1 && left[0].Peer.Peer == ids[2] && len(unpub) == 1 && unpub[0].Track.Peer == ids[2]
		}, 5*time.Second, 10*time.Millisecond)
	}

	// Bad tokens: wrong signature, another room's, missing grant for publishing.
	bad, err := auth.NewKeyring(auth.Key{ID: "test", Secret: []byte("some-other-secret-0123456789abcdefgh")})
	require.NoError(t, err)
	forged, err := bad.Sign(auth.NewClaims(room, "mallory", []auth.Grant{auth.Publish}, time.Now(), time.Hour))
	require.NoError(t, err)
	_, err = client.Join(ctx, sdkURL(node), forged, client.Options{API: clientAPI(t), Trace: wire.trace})
	var ce *client.Error
	require.ErrorAs(t, err, &ce)
	require.Equal(t, "unauthorized", ce.Code)
	require.NotEmpty(t, ce.Message)
	_, err = client.Join(ctx, sdkURL(node), token(t, "other-room", "mallory", auth.Subscribe), client.Options{API: clientAPI(t), Room: room, Trace: wire.trace})
	require.ErrorAs(t, err, &ce)
	require.Equal(t, "forbidden", ce.Code)
	viewer, err := client.Join(ctx, sdkURL(node), token(t, room, "vic", auth.Subscribe), client.Options{API: clientAPI(t), Trace: wire.trace})
	require.NoError(t, err)
	require.Len(t, viewer.Peers, 2)
	require.Len(t, viewer.Tracks, 2)
	require.NoError(t, viewer.Send("no data grant", ""))
	ev := waitEvent(t, viewer, client.ErrorEvent)
	require.Equal(t, "forbidden", ev.Code)
	require.NoError(t, viewer.Leave())

	a.stopSend()
	b.stopSend()
	require.NoError(t, a.room.Leave())
	require.NoError(t, b.room.Leave())

	// The log: actors are the token identities; subscriptions carry transport sdk peers.
	require.NoError(t, node.WaitProjected(ctx))
	log := roomEvents(t, node.JetStream(), room)
	count := map[string]int{}
	for _, e := range log {
		count[e.Type]++
		if e.Type != events.TypeRoomCreated {
			require.Contains(t, []string{"alice", "bob", "carol", "vic"}, e.Actor, "event %s", e.Type)
		}
		if e.Type == events.TypePeerJoined {
			p, err := e.Payload()
			require.NoError(t, err)
			require.Equal(t, "sdk", p.(events.PeerJoined).Transport)
		}
	}
	require.Equal(t, 4, count[events.TypePeerJoined])
	require.Equal(t, 4, count[events.TypePeerLeft])
	require.Equal(t, 3, count[events.TypeTrackPublished])
	require.Equal(t, 3, count[events.TypeTrackUnpublished])
	require.Equal(t, 8, count[events.TypeSubscriptionStarted], "6 between the three, 2 for the viewer")
	requireSchemaValid(t, node.JetStream())
	live, err := projections.LoadRoom(ctx, node.Rooms(), room)
	require.NoError(t, err)
	folded, err := projections.FoldAll(room, log)
	require.NoError(t, err)
	requireSameRoom(t, folded, live)
	require.Empty(t, live.Peers)

	// Every message both ways matches its schema; the test saw every kind it should.
	seen := wire.requireValid(t)
	for _, k := range []string{"client.join", "client.answer", "client.publish", "client.data", "client.leave",
		"server.joined", "server.peer_joined", "server.peer_left", "server.track_published", "server.track_unpublished",
		"server.subscription", "server.offer", "server.data", "server.error"} {
		require.Positive(t, seen[k], "no %s message", k)
	}
}

func waitEvent(t *testing.T, r *client.Room, typ client.EventType) client.Event {
	t.Helper()
	timeout := time.After(5 * time.Second)
	for {
		select {
		case e, ok := <-r.Events():
			require.True(t, ok, "events closed before %s", typ)
			if e.Type == typ {
				return e
			}
		case <-timeout:
			t.Fatalf("no %s event", typ)
		}
	}
}

// TestSDKJoinLatency measures join-to-visible: from one peer's Join call until another peer's
// SDK reports its peer_joined, over 100 joins (set JETMEDIA_SDK_JOINS to change).
func TestSDKJoinLatency(t *testing.T) {
	if testing.Short() {
		t.Skip("latency measurement")
	}
	node := startNode(t, nodeConfig(t, "lat"))
	room := newRoom("lat")
	ctx := ctxT(t, 180*time.Second)
	watcher := joinSDK(t, ctx, node, room, "watcher", false)
	const joins = 100
	lat := make([]time.Duration, 0, joins)
	for i := range joins {
		start := time.Now()
		r, err := client.Join(ctx, sdkURL(node), token(t, room, fmt.Sprintf("j%d", i), auth.Subscribe), client.Options{API: clientAPI(t), Trace: wire.trace})
		require.NoError(t, err)
		id := r.Self.Peer
		var seenAt time.Time
		require.Eventually(t, func() bool {
			for _, e := range watcher.seen(client.PeerJoined) {
				if e.Peer.Peer == id {
					seenAt = e.At
					return true
				}
			}
			return false
		}, 10*time.Second, time.Millisecond)
		lat = append(lat, seenAt.Sub(start))
		require.NoError(t, r.Leave())
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	p := func(q float64) time.Duration { return lat[int(q*float64(len(lat)-1))] }
	t.Logf("join-to-visible over %d joins: p50 %v p99 %v max %v", len(lat), p(0.50), p(0.99), slices.Max(lat))
}

// TestSDKManualSubscribe: with auto-subscribe off a peer receives nothing until it subscribes
// to a track; unsubscribing ends the subscription in the log and the KV state.
func TestSDKManualSubscribe(t *testing.T) {
	node := startNode(t, nodeConfig(t, "manual"))
	room := newRoom("manual")
	ctx := ctxT(t, 60*time.Second)
	alice := joinSDK(t, ctx, node, room, "alice", true)
	require.Eventually(t, func() bool { return len(alice.seen(client.TrackPublished)) == 1 }, 10*time.Second, 10*time.Millisecond)
	track := alice.seen(client.TrackPublished)[0].Track.Track

	v, err := client.Join(ctx, sdkURL(node), token(t, room, "vic", auth.Subscribe), client.Options{API: clientAPI(t), ManualSubscribe: true, Trace: wire.trace})
	wire.ran(t)
	require.NoError(t, err)
	defer v.Close()
	var got atomic.Int64
	v.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		buf := make([]byte, 1500)
		for {
			if _, _, err := tr.Read(buf); err != nil {
				return
			}
			got.Add(1)
		}
	})
	require.Len(t, v.Tracks, 1)
	require.NoError(t, v.Subscribe("no-such-track"))
	require.Equal(t, "not_found", waitEvent(t, v, client.ErrorEvent).Code)
	require.Zero(t, got.Load(), "nothing before subscribing")
	require.NoError(t, v.Subscribe(track))
	require.Eventually(t, func() bool { return got.Load() > 30 }, 10*time.Second, 10*time.Millisecond)
	ev := waitEvent(t, v, client.Subscription)
	require.Equal(t, "active", ev.State)
	// A single-layer track takes layer choices and keeps playing; a layer it lacks is refused.
	require.NoError(t, v.SetViewSize(track, 320, 180))
	require.NoError(t, v.SetQuality(track, ""))
	require.NoError(t, v.SetQuality(track, "f"))
	require.Equal(t, "bad_request", waitEvent(t, v, client.ErrorEvent).Code)
	before := got.Load()
	require.Eventually(t, func() bool { return got.Load() > before+10 }, 10*time.Second, 10*time.Millisecond)
	require.NoError(t, v.Unsubscribe(track))
	ev = waitEvent(t, v, client.Subscription)
	require.Equal(t, "ended", ev.State)

	// Alice unpublishes her track: the others see it go.
	id, err := alice.room.TrackID(ctx, alice.sender)
	require.NoError(t, err)
	require.Equal(t, track, id)
	require.NoError(t, alice.room.Unpublish(ctx, alice.sender))
	ev = waitEvent(t, v, client.TrackUnpublished)
	require.Equal(t, track, ev.Track.Track)

	require.NoError(t, node.WaitProjected(ctx))
	live, err := projections.LoadRoom(ctx, node.Rooms(), room)
	require.NoError(t, err)
	require.Empty(t, live.Subs)
	require.Empty(t, live.Tracks)
	var types []string
	for _, e := range roomEvents(t, node.JetStream(), room) {
		if e.Actor == "vic" {
			types = append(types, e.Type)
		}
	}
	require.Equal(t, []string{events.TypePeerJoined, events.TypeSubscriptionStarted, events.TypeSubscriptionEnded}, types)
	requireSchemaValid(t, node.JetStream())
	wire.requireValid(t)
}
