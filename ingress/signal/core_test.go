package signal

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/events"
	"github.com/jetmedia/jetmedia/pipeline/auth"
	"github.com/jetmedia/jetmedia/pipeline/rtc"
)

var t0 = time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)

func claims(grants ...auth.Grant) auth.Claims {
	return auth.Claims{Room: "r1", Identity: "alice", Name: "Alice", Grants: grants}
}

func val(t *testing.T, v any) []byte {
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return b
}

func types(ms []ServerMessage) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.Type)
	}
	return out
}

// TestCoreRoomFromKV: the snapshot is sent once the watch's initial state is in, later KV
// changes become peer and track messages, other peers' tracks are auto-subscribed (with a
// subscription.started event) and unsubscribed when they go.
func TestCoreRoomFromKV(t *testing.T) {
	c := NewCore(rtc.Timeouts{}, "r1", "me", "n1", claims(auth.Publish, auth.Subscribe), true)
	out := c.Joined(t0, "1.2.3.4:5", "ua")
	require.Equal(t, []events.Payload{events.PeerJoined{Peer: "me", Transport: "sdk", Role: "publisher", Node: "n1",
		RemoteAddr: "1.2.3.4:5", UserAgent: "ua", Identity: "alice", Name: "Alice"}}, out.Events)

	// Initial state: bob and his track; nothing is sent before it is complete.
	require.Empty(t, c.KVPut(t0, "r1.room", []byte(`{}`)).Send)
	require.Empty(t, c.KVPut(t0, "r1.peer.bob", val(t, peerRecord{Peer: "bob", Transport: "whip", Identity: "bob"})).Send)
	require.Empty(t, c.KVPut(t0, "r1.track.tb", val(t, TrackSpec{Peer: "bob", Kind: "video", Codec: "video/VP8", ClockRate: 90000})).Send)
	out = c.KVReady(t0)
	require.Equal(t, []string{TypeJoined}, types(out.Send))
	j := out.Send[0]
	require.Equal(t, "me", j.Self.Peer)
	require.Equal(t, []string{"publish", "subscribe"}, j.Grants)
	require.Equal(t, []PeerInfo{{Peer: "bob", Identity: "bob", Transport: "whip"}}, j.Peers)
	require.Equal(t, []TrackInfo{{Track: "tb", Peer: "bob", Kind: "video", Codec: "video/VP8"}}, j.Tracks)
	require.Len(t, out.Subscribe, 1)
	require.Equal(t, []events.Payload{events.SubscriptionStarted{Peer: "me", Track: "tb", Publisher: "bob"}}, out.Events)

	// Own peer record: no message. Carol joins and publishes.
	require.Empty(t, c.KVPut(t0, "r1.peer.me", val(t, peerRecord{Peer: "me", Transport: "sdk"})).Send)
	out = c.KVPut(t0, "r1.peer.carol", val(t, peerRecord{Peer: "carol", Transport: "sdk"}))
	require.Equal(t, []string{TypePeerJoined}, types(out.Send))
	out = c.KVPut(t0, "r1.track.tc", val(t, TrackSpec{Peer: "carol", Kind: "audio", Codec: "audio/opus"}))
	require.Equal(t, []string{TypeTrackPublished}, types(out.Send))
	require.Equal(t, "tc", out.Subscribe[0].Track)
	// An update of a known key is no news.
	require.Empty(t, c.KVPut(t0, "r1.peer.carol", val(t, peerRecord{Peer: "carol", Transport: "sdk"})).Send)
	out = c.KVPut(t0, "r1.sub.me.tc", val(t, subRecord{Peer: "me", Track: "tc", Publisher: "carol"}))
	require.Equal(t, "active", out.Send[0].State)
	require.Empty(t, c.KVPut(t0, "r1.sub.bob.tc", val(t, subRecord{Peer: "bob", Track: "tc"})).Send, "others' subscriptions")

	// Carol's track and Carol go.
	out = c.KVDeleted(t0, "r1.track.tc")
	require.Equal(t, []string{TypeTrackUnpublished}, types(out.Send))
	require.Equal(t, []string{"tc"}, out.Unsubscribe)
	out = c.KVDeleted(t0, "r1.peer.carol")
	require.Equal(t, []string{TypePeerLeft}, types(out.Send))
	require.Equal(t, "carol", out.Send[0].Peer.Peer)
	require.Empty(t, c.KVDeleted(t0, "r1.peer.carol").Send, "a second delete is no news")
	require.Empty(t, c.KVPut(t0, "r2.peer.x", val(t, peerRecord{Peer: "x"})).Send, "another room's key")
}

func TestCoreManualModeAndGrants(t *testing.T) {
	c := NewCore(rtc.Timeouts{}, "r1", "me", "n1", claims(auth.Subscribe), false)
	c.Joined(t0, "", "")
	c.KVPut(t0, "r1.track.tb", val(t, TrackSpec{Peer: "bob", Kind: "video"}))
	out := c.KVReady(t0)
	require.Empty(t, out.Subscribe, "manual mode")
	out = c.Message(t0, ClientMessage{Type: TypePublish, Kind: "video"})
	require.Equal(t, CodeForbidden, out.Send[0].Code)
	p := "x"
	out = c.Message(t0, ClientMessage{Type: TypeData, Payload: &p})
	require.Equal(t, CodeForbidden, out.Send[0].Code)
	out, ok := c.TrackStarted(t0, TrackSpec{Track: "t1", Kind: "video"})
	require.False(t, ok, "a track without a publish")
	require.Empty(t, out.Events)

	v := NewCore(rtc.Timeouts{}, "r1", "me", "n1", claims(auth.Subscribe), true)

	v.Joined(t0, "", "")
	v.KVPut(t0, "r1.track.tb", val(t, TrackSpec{Peer: "bob", Kind: "video"}))
	require.Len(t, v.KVReady(t0).Subscribe, 1)
	nosub := NewCore(rtc.Timeouts{}, "r1", "me", "n1", claims(auth.Publish), true)
	nosub.Joined(t0, "", "")
	nosub.KVPut(t0, "r1.track.tb", val(t, TrackSpec{Peer: "bob", Kind: "video"}))
	require.Empty(t, nosub.KVReady(t0).Subscribe, "no subscribe grant")
}

func TestCorePublishDataLeave(t *testing.T) {
	c := NewCore(rtc.Timeouts{}, "r1", "me", "n1", claims(auth.Publish, auth.Data), true)
	c.Joined(t0, "", "")
	c.KVPut(t0, "r1.peer.bob", val(t, peerRecord{Peer: "bob", Transport: "sdk"}))
	c.KVReady(t0)

	require.Empty(t, c.Message(t0, ClientMessage{Type: TypePublish, Kind: "video", Source: "camera"}).Send)
	out, ok := c.TrackStarted(t0, TrackSpec{Track: "t1", Peer: "me", Kind: "video", Codec: "video/VP8", ClockRate: 90000})
	require.True(t, ok)
	require.Equal(t, []events.Payload{events.TrackPublished{Peer: "me", Track: "t1", Kind: "video", Codec: "video/VP8", ClockRate: 90000, Layers: []string{"0"}, Source: "camera"}}, out.Events)
	_, ok = c.TrackStarted(t0, TrackSpec{Track: "t2", Kind: "video"})
	require.False(t, ok, "one publish admits one track")

	p := "hello"
	out = c.Message(t0, ClientMessage{Type: TypeData, Payload: &p})
	require.Equal(t, []DataMessage{{From: "me", Payload: "hello"}}, out.Data)
	out = c.Message(t0, ClientMessage{Type: TypeData, Payload: &p, To: "bob"})
	require.Equal(t, []DataMessage{{From: "me", To: "bob", Payload: "hello"}}, out.Data)
	out = c.Message(t0, ClientMessage{Type: TypeData, Payload: &p, To: "nobody"})
	require.Empty(t, out.Data)
	require.Equal(t, CodeNotFound, out.Send[0].Code)

	require.Empty(t, c.DataReceived(t0, DataMessage{From: "me", Payload: "x"}).Send, "own room message")
	require.Empty(t, c.DataReceived(t0, DataMessage{From: "bob", To: "carol", Payload: "x"}).Send, "for another peer")
	require.Equal(t, []string{TypeData}, types(c.DataReceived(t0, DataMessage{From: "bob", Payload: "x"}).Send))

	out = c.Message(t0, ClientMessage{Type: TypeLeave})
	require.NotEmpty(t, out.Close)
	require.Equal(t, []events.Payload{events.TrackUnpublished{Peer: "me", Track: "t1"}, events.PeerLeft{Peer: "me", Reason: "closed", Cause: events.LeaveCause{By: events.ByClient}}}, out.Events)
	require.True(t, c.Closed())
	require.Empty(t, c.SocketClosed(t0).Events, "closed once")
	require.Empty(t, c.Shutdown(t0).Events)
}

func TestCoreManualSubscribe(t *testing.T) {
	c := NewCore(rtc.Timeouts{}, "r1", "me", "n1", claims(auth.Subscribe, auth.Publish), false)
	c.Joined(t0, "", "")
	c.KVPut(t0, "r1.track.tb", val(t, TrackSpec{Peer: "bob", Kind: "video"}))
	c.KVReady(t0)
	out := c.Message(t0, ClientMessage{Type: TypeSubscribe, Track: "tb"})
	require.Len(t, out.Subscribe, 1)
	require.Equal(t, []events.Payload{events.SubscriptionStarted{Peer: "me", Track: "tb", Publisher: "bob"}}, out.Events)
	require.Empty(t, c.Message(t0, ClientMessage{Type: TypeSubscribe, Track: "tb"}).Events, "twice is once")
	require.Equal(t, CodeNotFound, c.Message(t0, ClientMessage{Type: TypeSubscribe, Track: "nope"}).Send[0].Code)
	out = c.Message(t0, ClientMessage{Type: TypeUnsubscribe, Track: "tb"})
	require.Equal(t, []string{"tb"}, out.Unsubscribe)
	require.Equal(t, []events.Payload{events.SubscriptionEnded{Peer: "me", Track: "tb"}}, out.Events)
	require.Equal(t, CodeNotFound, c.Message(t0, ClientMessage{Type: TypeUnsubscribe, Track: "tb"}).Send[0].Code)
	// Own tracks cannot be subscribed to.
	c.KVPut(t0, "r1.track.mine", val(t, TrackSpec{Peer: "me", Kind: "video"}))
	require.Equal(t, CodeNotFound, c.Message(t0, ClientMessage{Type: TypeSubscribe, Track: "mine"}).Send[0].Code)
}

func TestCoreLayer(t *testing.T) {
	c := NewCore(rtc.Timeouts{}, "r1", "me", "n1", claims(auth.Subscribe), false)
	c.Joined(t0, "", "")
	c.KVPut(t0, "r1.track.tb", val(t, TrackSpec{Peer: "bob", Kind: "video", Layers: []string{"q", "h", "f"}}))
	c.KVReady(t0)
	str := func(s string) *string { return &s }
	num := func(n int) *int { return &n }
	require.Equal(t, CodeNotFound, c.Message(t0, ClientMessage{Type: TypeLayer, Track: "tb", Quality: str("q")}).Send[0].Code, "not subscribed")
	require.Len(t, c.Message(t0, ClientMessage{Type: TypeSubscribe, Track: "tb"}).Subscribe, 1)
	for _, tc := range []struct {
		name string
		m    ClientMessage
		code string
	}{
		{"quality", ClientMessage{Quality: str("q")}, ""},
		{"automatic", ClientMessage{Quality: str("")}, ""},
		{"size", ClientMessage{Width: num(320), Height: num(180)}, ""},
		{"unknown layer", ClientMessage{Quality: str("x")}, CodeBadRequest},
		{"nothing chosen", ClientMessage{}, CodeBadRequest},
		{"negative width", ClientMessage{Width: num(-1)}, CodeBadRequest},
		{"huge height", ClientMessage{Height: num(MaxDimension + 1)}, CodeBadRequest},
	} {
		tc.m.Type, tc.m.Track = TypeLayer, "tb"
		out := c.Message(t0, tc.m)
		require.Empty(t, out.Events, "%s: nothing enters the log", tc.name)
		if tc.code != "" {
			require.Equal(t, tc.code, out.Send[0].Code, tc.name)
			require.Empty(t, out.Layers, tc.name)
			continue
		}
		require.Equal(t, []LayerChoice{{Track: "tb", Quality: tc.m.Quality, Width: tc.m.Width, Height: tc.m.Height}}, out.Layers, tc.name)
	}
}

// A publish may name its codec: the shell then offers only it; a codec of the other kind or
// not a MIME type is refused.
func TestCorePublishCodec(t *testing.T) {
	c := NewCore(rtc.Timeouts{}, "r1", "me", "n1", claims(auth.Publish), true)
	c.Joined(t0, "", "")
	c.KVReady(t0)
	out := c.Message(t0, ClientMessage{Type: TypePublish, Kind: "video", Codec: "video/H264", Simulcast: []string{"q", "h", "f"}})
	require.Empty(t, out.Send)
	require.Equal(t, "video/H264", out.ReceiveCodec)
	require.Equal(t, []string{"q", "h", "f"}, out.ReceiveLayers)
	for _, bad := range []string{"audio/opus", "H264", "video/", "video/H 264", "video/" + strings.Repeat("x", 40)} {
		out = c.Message(t0, ClientMessage{Type: TypePublish, Kind: "video", Codec: bad})
		require.Len(t, out.Send, 1, bad)
		require.Equal(t, CodeBadRequest, out.Send[0].Code, bad)
		require.Empty(t, out.Receive, bad)
	}
}
