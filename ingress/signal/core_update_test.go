package signal

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/events"
	"github.com/jetmedia/jetmedia/pipeline/auth"
	"github.com/jetmedia/jetmedia/pipeline/rtc"
)

func bptr(b bool) *bool { return &b }

// publishedCore is a ready core of peer "me" that publishes track "t1" (announced muted, as a
// camera) in a room with bob and his track "tb".
func publishedCore(t *testing.T, grace time.Duration) *Core {
	t.Helper()
	c := NewCore(rtc.Timeouts{}, "r1", "me", "n1", claims(auth.Publish, auth.Subscribe, auth.Data), true)
	c.Joined(t0, "", "")
	c.SetJoinOptions(JoinOptions{Metadata: "m0", ResumeToken: "me.secret", Grace: grace})
	c.KVPut(t0, "r1.peer.bob", val(t, peerRecord{Peer: "bob", Transport: "sdk", Metadata: "b0"}))
	c.KVPut(t0, "r1.track.tb", val(t, TrackSpec{Peer: "bob", Kind: "video", Codec: "video/VP8", Source: "screen"}))
	c.KVReady(t0)
	require.Empty(t, c.Message(t0, ClientMessage{Type: TypePublish, Kind: "audio", Source: "mic", Muted: bptr(true)}).Send)
	out, ok := c.TrackStarted(t0, TrackSpec{Track: "t1", Peer: "me", Kind: "audio", Codec: "audio/opus", ClockRate: 48000})
	require.True(t, ok)
	require.Equal(t, []events.Payload{events.TrackPublished{Peer: "me", Track: "t1", Kind: "audio", Codec: "audio/opus",
		ClockRate: 48000, Layers: []string{"0"}, Source: "mic", Muted: true}}, out.Events)
	return c
}

func TestCoreJoinCarriesMetadataAndResumeToken(t *testing.T) {
	c := NewCore(rtc.Timeouts{}, "r1", "me", "n1", claims(auth.Subscribe), true)
	c.SetJoinOptions(JoinOptions{Metadata: `{"seat":1}`, ResumeToken: "me.s", Grace: time.Second})
	out := c.Joined(t0, "", "")
	require.Equal(t, `{"seat":1}`, out.Events[0].(events.PeerJoined).Metadata)
	c.KVPut(t0, "r1.peer.bob", val(t, peerRecord{Peer: "bob", Transport: "sdk", Metadata: "b"}))
	c.KVPut(t0, "r1.track.tb", val(t, TrackSpec{Peer: "bob", Kind: "video", Codec: "video/VP8", Source: "camera", Muted: true}))
	j := c.KVReady(t0).Send[0]
	require.Equal(t, "me.s", j.ResumeToken)
	require.False(t, j.Resumed)
	require.Equal(t, `{"seat":1}`, j.Self.Metadata)
	require.Equal(t, []PeerInfo{{Peer: "bob", Transport: "sdk", Metadata: "b"}}, j.Peers)
	require.Equal(t, []TrackInfo{{Track: "tb", Peer: "bob", Kind: "video", Codec: "video/VP8", Source: "camera", Muted: true}}, j.Tracks)
}

func TestCoreMuteAndUpdate(t *testing.T) {
	c := publishedCore(t, 0)
	tests := []struct {
		name   string
		msg    ClientMessage
		code   string
		events []events.Payload
	}{
		{"unmute own track", ClientMessage{Type: TypeMute, Track: "t1", Muted: bptr(false)}, "", []events.Payload{events.TrackUpdated{Peer: "me", Track: "t1", Muted: false}}},
		{"unmute again changes nothing", ClientMessage{Type: TypeMute, Track: "t1", Muted: bptr(false)}, "", nil},
		{"mute", ClientMessage{Type: TypeMute, Track: "t1", Muted: bptr(true)}, "", []events.Payload{events.TrackUpdated{Peer: "me", Track: "t1", Muted: true}}},
		{"mute another peer's track", ClientMessage{Type: TypeMute, Track: "tb", Muted: bptr(true)}, CodeNotFound, nil},
		{"mute an unknown track", ClientMessage{Type: TypeMute, Track: "nope", Muted: bptr(true)}, CodeNotFound, nil},
		{"mute without muted", ClientMessage{Type: TypeMute, Track: "t1"}, CodeBadRequest, nil},
		{"update metadata", ClientMessage{Type: TypeUpdate, Metadata: "m1"}, "", []events.Payload{events.PeerUpdated{Peer: "me", Metadata: "m1"}}},
		{"same metadata changes nothing", ClientMessage{Type: TypeUpdate, Metadata: "m1"}, "", nil},
		{"metadata of 4096 bytes", ClientMessage{Type: TypeUpdate, Metadata: strings.Repeat("é", 2048)}, "", []events.Payload{events.PeerUpdated{Peer: "me", Metadata: strings.Repeat("é", 2048)}}},
		{"metadata over 4096 bytes", ClientMessage{Type: TypeUpdate, Metadata: strings.Repeat("x", 4097)}, CodeBadRequest, nil},
		{"clear metadata", ClientMessage{Type: TypeUpdate}, "", []events.Payload{events.PeerUpdated{Peer: "me", Metadata: ""}}},
		{"publish with a 65-character source", ClientMessage{Type: TypePublish, Kind: "video", Source: strings.Repeat("s", 65)}, CodeBadRequest, nil},
		{"publish with a 64-character source", ClientMessage{Type: TypePublish, Kind: "video", Source: strings.Repeat("ü", 64)}, "", nil},
	}
	for _, tt := range tests {
		out := c.Message(t0, tt.msg)
		require.Equal(t, tt.events, out.Events, tt.name)
		if tt.code == "" {
			require.Empty(t, out.Send, tt.name)
		} else {
			require.Len(t, out.Send, 1, tt.name)
			require.Equal(t, tt.code, out.Send[0].Code, tt.name)
			require.NotEmpty(t, out.Send[0].Message, tt.name)
		}
	}
	// After unpublish the track cannot be muted.
	c.Message(t0, ClientMessage{Type: TypeUnpublish, Track: "t1"})
	require.Equal(t, CodeNotFound, c.Message(t0, ClientMessage{Type: TypeMute, Track: "t1", Muted: bptr(false)}).Send[0].Code)
}

// TestCoreUpdatesFromKV: a known peer's metadata change is a peer_updated for the others (not
// for itself), a known track's muted change a track_updated for everyone; other changes of
// known keys are no news.
func TestCoreUpdatesFromKV(t *testing.T) {
	c := publishedCore(t, 0)
	out := c.KVPut(t0, "r1.peer.bob", val(t, peerRecord{Peer: "bob", Transport: "sdk", Metadata: "b1"}))
	require.Equal(t, []ServerMessage{{Type: TypePeerUpdated, Peer: &PeerInfo{Peer: "bob", Transport: "sdk", Metadata: "b1"}}}, out.Send)
	require.Empty(t, c.KVPut(t0, "r1.peer.bob", val(t, peerRecord{Peer: "bob", Transport: "sdk", Metadata: "b1", Name: "B"})).Send)
	c.KVPut(t0, "r1.peer.me", val(t, peerRecord{Peer: "me", Transport: "sdk", Metadata: "m0"}))
	require.Empty(t, c.KVPut(t0, "r1.peer.me", val(t, peerRecord{Peer: "me", Transport: "sdk", Metadata: "m1"})).Send, "own update")

	out = c.KVPut(t0, "r1.track.tb", val(t, TrackSpec{Peer: "bob", Kind: "video", Codec: "video/VP8", Source: "screen", Muted: true}))
	require.Equal(t, []ServerMessage{{Type: TypeTrackUpdated, Track: &TrackInfo{Track: "tb", Peer: "bob", Kind: "video", Codec: "video/VP8", Source: "screen", Muted: true}}}, out.Send)
	require.Empty(t, c.KVPut(t0, "r1.track.tb", val(t, TrackSpec{Peer: "bob", Kind: "video", Codec: "video/VP8", Source: "screen", Muted: true})).Send)
	c.KVPut(t0, "r1.track.t1", val(t, TrackSpec{Peer: "me", Kind: "audio", Codec: "audio/opus", Muted: true}))
	out = c.KVPut(t0, "r1.track.t1", val(t, TrackSpec{Peer: "me", Kind: "audio", Codec: "audio/opus", Muted: false}))
	require.Equal(t, []string{TypeTrackUpdated}, types(out.Send), "the publisher sees its own track_updated too")

	// Layers ride along and a changed layer set is an update too.
	out = c.KVPut(t0, "r1.track.tb", val(t, TrackSpec{Peer: "bob", Kind: "video", Codec: "video/VP8", Source: "screen", Muted: true, Layers: []string{"0"}}))
	require.Equal(t, []ServerMessage{{Type: TypeTrackUpdated, Track: &TrackInfo{Track: "tb", Peer: "bob", Kind: "video", Codec: "video/VP8", Source: "screen", Muted: true, Layers: []string{"0"}}}}, out.Send)
	require.Empty(t, c.KVPut(t0, "r1.track.tb", val(t, TrackSpec{Peer: "bob", Kind: "video", Codec: "video/VP8", Source: "screen", Muted: true, Layers: []string{"0"}})).Send)
	out = c.KVPut(t0, "r1.track.tb", val(t, TrackSpec{Peer: "bob", Kind: "video", Codec: "video/VP8", Source: "screen", Muted: true, Layers: []string{"0", "1"}}))
	require.Equal(t, []string{TypeTrackUpdated}, types(out.Send))
	require.Equal(t, []string{"0", "1"}, out.Send[0].Track.Layers)
}

// TestCoreResume walks the grace period's decisions with explicit times.
func TestCoreResume(t *testing.T) {
	const grace = 10 * time.Second
	alice := claims(auth.Publish)
	t.Run("socket drop starts the grace, nothing is recorded", func(t *testing.T) {
		c := publishedCore(t, grace)
		out := c.SocketClosed(t0)
		require.Empty(t, out.Events)
		require.Empty(t, out.Close)
		require.True(t, c.Detached())
		require.Empty(t, c.SocketClosed(t0.Add(time.Second)).Events, "a second drop changes nothing")
		require.Empty(t, c.Tick(t0.Add(grace-time.Millisecond)).Events, "still within the grace")
		require.False(t, c.Closed())
	})
	t.Run("resume within the grace re-attaches with a fresh snapshot", func(t *testing.T) {
		c := publishedCore(t, grace)
		c.SocketClosed(t0)
		// The room changed meanwhile.
		c.KVDeleted(t0.Add(time.Second), "r1.peer.bob")
		c.KVPut(t0.Add(time.Second), "r1.peer.carol", val(t, peerRecord{Peer: "carol", Transport: "sdk"}))
		out, ok := c.Resume(t0.Add(grace-time.Millisecond), alice, "me.secret")
		require.True(t, ok)
		require.Empty(t, out.Events)
		require.Len(t, out.Send, 1)
		j := out.Send[0]
		require.Equal(t, TypeJoined, j.Type)
		require.True(t, j.Resumed)
		require.Equal(t, "me.secret", j.ResumeToken)
		require.Equal(t, []PeerInfo{{Peer: "carol", Transport: "sdk"}}, j.Peers)
		require.False(t, c.Detached())
		require.Empty(t, c.Tick(t0.Add(time.Hour)).Events, "an attached session does not time out")
		// The grace starts again at the next drop.
		c.SocketClosed(t0.Add(time.Hour))
		require.Empty(t, c.Tick(t0.Add(time.Hour+grace-time.Millisecond)).Events)
		require.Len(t, c.Tick(t0.Add(time.Hour+grace)).Events, 2)
	})
	t.Run("tick at the grace's end: tracks unpublished, peer left disconnected", func(t *testing.T) {
		c := publishedCore(t, grace)
		c.SocketClosed(t0)
		out := c.Tick(t0.Add(grace))
		require.NotEmpty(t, out.Close)
		require.Len(t, out.Events, 2)
		require.Equal(t, events.TrackUnpublished{Peer: "me", Track: "t1"}, out.Events[0])
		require.Equal(t, "disconnected", out.Events[1].(events.PeerLeft).Reason)
		require.True(t, c.Closed())
		rout, ok := c.Resume(t0.Add(grace+time.Second), alice, "me.secret")
		require.False(t, ok)
		require.Equal(t, CodeResumeExpired, rout.Send[0].Code)
		require.Empty(t, rout.Events)
	})
	t.Run("resume after the grace before any tick: expired, and the peer leaves now", func(t *testing.T) {
		c := publishedCore(t, grace)
		c.SocketClosed(t0)
		out, ok := c.Resume(t0.Add(grace), alice, "me.secret")
		require.False(t, ok)
		require.NotEmpty(t, out.Close)
		require.Len(t, out.Events, 2)
		require.Equal(t, CodeResumeExpired, out.Send[0].Code)
		require.Empty(t, c.Tick(t0.Add(2*grace)).Events, "left once")
	})
	t.Run("wrong token, other identity", func(t *testing.T) {
		c := publishedCore(t, grace)
		c.SocketClosed(t0)
		out, ok := c.Resume(t0, alice, "me.guess")
		require.False(t, ok)
		require.Equal(t, CodeUnauthorized, out.Send[0].Code)
		out, ok = c.Resume(t0, auth.Claims{Room: "r1", Identity: "mallory"}, "me.secret")
		require.False(t, ok)
		require.Equal(t, CodeForbidden, out.Send[0].Code)
		require.True(t, c.Detached(), "refused resumes leave the session waiting")
		require.Len(t, c.Tick(t0.Add(grace)).Events, 2)
	})
	t.Run("resume while the old socket still looks alive replaces it", func(t *testing.T) {
		c := publishedCore(t, grace)
		out, ok := c.Resume(t0, alice, "me.secret")
		require.True(t, ok)
		require.True(t, out.Send[0].Resumed)
	})
	t.Run("leave ends at once, later resume expired", func(t *testing.T) {
		c := publishedCore(t, grace)
		require.Len(t, c.Message(t0, ClientMessage{Type: TypeLeave}).Events, 2)
		_, ok := c.Resume(t0, alice, "me.secret")
		require.False(t, ok)
	})
	t.Run("failed PeerConnection ends a detached session at once", func(t *testing.T) {
		c := publishedCore(t, grace)
		c.SocketClosed(t0)
		require.Equal(t, "disconnected", c.Failed(t0.Add(time.Second)).Events[1].(events.PeerLeft).Reason)
	})
	t.Run("shutdown ends a detached session", func(t *testing.T) {
		c := publishedCore(t, grace)
		c.SocketClosed(t0)
		out := c.Shutdown(t0.Add(time.Second))
		require.NotEmpty(t, out.Close)
		require.Equal(t, "shutdown", out.Events[1].(events.PeerLeft).Reason)
	})
	t.Run("without a grace the peer leaves with its socket", func(t *testing.T) {
		c := publishedCore(t, 0)
		out := c.SocketClosed(t0)
		require.NotEmpty(t, out.Close)
		require.Equal(t, "disconnected", out.Events[1].(events.PeerLeft).Reason)
	})
}
