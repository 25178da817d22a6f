package cluster

import (
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/events"
	"github.com/jetmedia/jetmedia/pipeline/auth"
	"github.com/jetmedia/jetmedia/tests/cutproxy"
	"github.com/jetmedia/jetmedia/tests/rtcclient"
)

// TestCutLeafEndsOwnSessions: m is a media-only leaf (no JetStream: its log and buckets are
// the hub's) linked to h through a TCP proxy, serving a WHIP publisher and a WHEP viewer of
// it. The link is cut for longer than the lease TTL: h takes m for lost and ends both
// sessions in the log, while m, alive, goes on serving them (its viewer keeps playing: the
// media stays on m). When the link heals, m's renewals are stored again after a lapse; m
// looks for sessions the log ended and ends both itself (their resources answer 404), and
// the log holds one peer.left per peer, h's.
func TestCutLeafEndsOwnSessions(t *testing.T) {
	hc := nodeConfig(t, "h")
	hc.LeafListen, hc.Presence, hc.Placement = "127.0.0.1:0", killLease, false
	hc.NATSConfig = writeFile(t, "hub.conf", "leafnodes { no_advertise: true }\n") // the leaf reconnects through the proxy only
	h := startNodes(t, hc)[0]
	proxy := cutproxy.New(t, strings.TrimPrefix(h.Server().LeafURL(), "nats-leaf://"))
	mc := nodeConfig(t, "m")
	mc.Hub, mc.JetStream = "nats-leaf://"+proxy.Addr(), false
	mc.Presence, mc.Placement = killLease, false
	m := startNodes(t, mc)[0]

	ctx := ctxT(t, 2*time.Minute)
	api := clientAPI(t)
	room := newRoom("cutleaf")
	pub, err := rtcclient.Publish(ctx, api, m.HTTPURL(), room, asPublisher(t, room))
	require.NoError(t, err)
	defer pub.Close(false)
	waitTracks(t, h, room, 2)
	v, err := rtcclient.Play(ctx, api, m.HTTPURL(), room, asViewer(t, room))
	require.NoError(t, err)
	defer v.Close()
	require.Eventually(t, func() bool { return v.Video.Load() > 30 }, 15*time.Second, 20*time.Millisecond)
	waitPeers(t, h, room, 2)
	peers := peersOnNode(t, h, room, "m")
	require.Len(t, peers, 2)

	proxy.Cut()
	cutAt := time.Now()
	leftBy := func() map[string]int {
		out := map[string]int{}
		for _, e := range roomEvents(t, h.JetStream(), room) {
			if e.Type == events.TypePeerLeft {
				out[e.Node]++
			}
		}
		return out
	}
	require.Eventually(t, func() bool { return leftBy()["h"] == 2 }, killLease.TTL+20*time.Second, 100*time.Millisecond,
		"h takes m for lost and ends its two sessions in the log")
	t.Logf("link cut -> h ended m's sessions in the log: %v (lease TTL %v)", time.Since(cutAt).Round(time.Millisecond), killLease.TTL)
	playing := v.Video.Load()
	require.Eventually(t, func() bool { return v.Video.Load() > playing+30 }, 10*time.Second, 20*time.Millisecond,
		"m, cut off and alive, still serves the viewer the log has ended")
	require.Equal(t, 1, m.Sessions(events.TransportWHIP))

	proxy.Heal()
	healed := time.Now()
	require.Eventually(t, func() bool { return m.Sessions("") == 0 }, 30*time.Second, 20*time.Millisecond,
		"m ends the sessions the log ended once its link is back")
	t.Logf("link healed -> m ended both sessions itself: %v", time.Since(healed).Round(time.Millisecond))
	for loc, tok := range map[string]string{pub.Location: token(t, room, "test-publisher", auth.Publish), v.Location: token(t, room, "test-viewer", auth.Subscribe)} {
		err := rtcclient.Delete(ctx, http.DefaultClient, loc, tok)
		var he *rtcclient.HTTPError
		require.True(t, errors.As(err, &he), "%v", err)
		require.Equal(t, http.StatusNotFound, he.Status, "the session at %s is gone", loc)
	}
	time.Sleep(3 * killLease.Renew) // m's writes, were there any, would have landed
	require.Equal(t, map[string]int{"h": 2}, leftBy(), "one peer.left per peer, h's")
	left := 0
	for _, e := range roomEvents(t, h.JetStream(), room) {
		if e.Type == events.TypePeerLeft {
			p, err := e.Payload()
			require.NoError(t, err)
			require.Contains(t, peers, p.(events.PeerLeft).Peer)
			left++
		}
	}
	require.Equal(t, 2, left)
	requireChainsHold(t, h.JetStream())
	requireRebuildEqual(t, h)
}
