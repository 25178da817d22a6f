package signal

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/pipeline/auth"
	"github.com/jetmedia/jetmedia/pipeline/rtc"
)

// TestCoreResync: a replaced watch's initial state tells the client what ended (and began)
// while the old watch was silent, and nothing about what it knew already.
func TestCoreResync(t *testing.T) {
	c := NewCore(rtc.Timeouts{}, "r1", "me", "n1", claims(auth.Publish, auth.Subscribe), true)
	c.Joined(t0, "1.2.3.4:5", "ua")
	bob := val(t, peerRecord{Peer: "bob", Transport: "whip"})
	tb := val(t, TrackSpec{Peer: "bob", Kind: "video", Codec: "video/VP8"})
	carol := val(t, peerRecord{Peer: "carol", Transport: "sdk"})
	tc := val(t, TrackSpec{Peer: "carol", Kind: "audio", Codec: "audio/opus"})
	for k, v := range map[string][]byte{"r1.room": []byte(`{}`), "r1.peer.bob": bob, "r1.track.tb": tb, "r1.peer.carol": carol, "r1.track.tc": tc} {
		c.KVPut(t0, k, v)
	}
	out := c.KVReady(t0)
	require.Len(t, out.Subscribe, 2)
	require.Equal(t, "active", c.KVPut(t0, "r1.sub.me.tb", val(t, subRecord{Peer: "me", Track: "tb", Publisher: "bob"})).Send[0].State)
	require.Equal(t, "active", c.KVPut(t0, "r1.sub.me.tc", val(t, subRecord{Peer: "me", Track: "tc", Publisher: "carol"})).Send[0].State)

	// The watch went silent; bob's node died meanwhile (his track, his peer and my
	// subscription to it ended) and dave joined. The new watch shows the room as it is now.
	require.Empty(t, c.KVResync(t0).Send)
	require.Empty(t, c.KVPut(t0, "r1.room", []byte(`{}`)).Send)
	require.Empty(t, c.KVPut(t0, "r1.peer.carol", carol).Send, "known, unchanged")
	require.Empty(t, c.KVPut(t0, "r1.track.tc", tc).Send, "known, unchanged")
	require.Empty(t, c.KVPut(t0, "r1.sub.me.tc", val(t, subRecord{Peer: "me", Track: "tc", Publisher: "carol"})).Send,
		"a subscription the client knows is no news")
	require.Empty(t, c.KVPut(t0, "r1.sub.carol.tb", val(t, subRecord{Peer: "carol", Track: "tb"})).Send, "another peer's subscription")
	out = c.KVPut(t0, "r1.peer.dave", val(t, peerRecord{Peer: "dave", Transport: "sdk"}))
	require.Equal(t, []string{TypePeerJoined}, types(out.Send))
	out = c.KVResynced(t0)
	require.Equal(t, []string{TypeSubscription, TypeTrackUnpublished, TypePeerLeft}, types(out.Send))
	require.Equal(t, "ended", out.Send[0].State)
	require.Equal(t, "tb", out.Send[0].Track.Track)
	require.Equal(t, "tb", out.Send[1].Track.Track)
	require.Equal(t, "bob", out.Send[2].Peer.Peer)
	require.Equal(t, []string{"tb"}, out.Unsubscribe)

	// Later changes are told as before; a second resync that finds nothing new says nothing.
	require.Equal(t, []string{TypePeerLeft}, types(c.KVDeleted(t0, "r1.peer.dave").Send))
	c.KVResync(t0)
	for k, v := range map[string][]byte{"r1.room": []byte(`{}`), "r1.peer.carol": carol, "r1.track.tc": tc} {
		require.Empty(t, c.KVPut(t0, k, v).Send)
	}
	require.Empty(t, c.KVPut(t0, "r1.sub.me.tc", val(t, subRecord{Peer: "me", Track: "tc"})).Send)
	require.Empty(t, c.KVResynced(t0).Send)
	require.Equal(t, "active", c.KVPut(t0, "r1.sub.me.tc", val(t, subRecord{Peer: "me", Track: "tc"})).Send[0].State,
		"outside a resync, a subscription's write is told as before")
}

// TestCoreResyncBeforeReady: a watch replaced before its initial values were done: the new
// watch's state is the initial one, and its end sends the snapshot.
func TestCoreResyncBeforeReady(t *testing.T) {
	c := NewCore(rtc.Timeouts{}, "r1", "me", "n1", claims(auth.Subscribe), true)
	c.Joined(t0, "", "")
	require.Empty(t, c.KVResync(t0).Send)
	c.KVPut(t0, "r1.peer.bob", val(t, peerRecord{Peer: "bob", Transport: "whip"}))
	out := c.KVResynced(t0)
	require.Equal(t, []string{TypeJoined}, types(out.Send))
	require.Len(t, out.Send[0].Peers, 1)
	require.Empty(t, c.KVResynced(t0).Send, "once")
}
