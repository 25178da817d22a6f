package cluster

import (
	"errors"
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/cmd/jetmedia/app"
	"github.com/jetmedia/jetmedia/projections/presence"
	"github.com/jetmedia/jetmedia/tests/rtcclient"
)

// startRouted starts n nodes of one region joined by routes, with short leases.
func startRouted(t *testing.T, mutate func(i int, cfg *app.Config), names ...string) []*app.Node {
	ports := freePorts(t, len(names))
	routes := make([]string, len(names))
	for i, p := range ports {
		routes[i] = "nats://127.0.0.1:" + strconv.Itoa(p)
	}
	cfgs := make([]app.Config, len(names))
	for i, name := range names {
		cfgs[i] = nodeConfig(t, name)
		cfgs[i].NATSListen = "127.0.0.1:0"
		cfgs[i].ClusterListen = "127.0.0.1:" + strconv.Itoa(ports[i])
		cfgs[i].Routes = routes
		cfgs[i].Presence = presence.Timing{Renew: 500 * time.Millisecond, TTL: 3 * time.Second, Recheck: 10 * time.Second}
		if mutate != nil {
			mutate(i, &cfgs[i])
		}
	}
	return startNodes(t, cfgs...)
}

// TestPlacementRedirects: node a admits one session (--max-sessions 1) and holds a publisher;
// a WHEP viewer that asks a is answered with a 307 to b (from the leases), plays there, and
// its session URL is b's. With placement off, a full node answers 503 instead.
func TestPlacementRedirects(t *testing.T) {
	nodes := startRouted(t, func(i int, cfg *app.Config) {
		if i == 0 {
			cfg.MaxSessions = 1
		}
		if i == 2 {
			cfg.MaxSessions, cfg.Placement = 1, false
		}
	}, "a", "b", "c")
	a, b, c := nodes[0], nodes[1], nodes[2]
	ctx := ctxT(t, 2*time.Minute)
	api := clientAPI(t)
	room := newRoom("placed")
	pub, err := rtcclient.Publish(ctx, api, a.HTTPURL(), room, asPublisher(t, room))
	require.NoError(t, err)
	defer pub.Close(true)
	waitTracks(t, b, room, 2)

	// a's leases may be a renewal old, or (on a loaded machine) b's and c's may look lapsed
	// for a moment: a full a then answers 503 with Retry-After, which a client retries.
	var v *rtcclient.Viewer
	require.Eventually(t, func() bool {
		v, err = rtcclient.Play(ctx, api, a.HTTPURL(), room, asViewer(t, room))
		var he *rtcclient.HTTPError
		if errors.As(err, &he) && he.Status == 503 {
			return false
		}
		require.NoError(t, err)
		return true
	}, 20*time.Second, 500*time.Millisecond)
	defer v.Close()
	loc, err := url.Parse(v.Location)
	require.NoError(t, err)
	bURL, err := url.Parse(b.HTTPURL())
	require.NoError(t, err)
	require.Equal(t, bURL.Host, loc.Host, "a was full: the viewer was sent to b")
	require.Eventually(t, func() bool { return v.Video.Load() > 30 && v.Audio.Load() > 30 }, 15*time.Second, 20*time.Millisecond)

	// c, placement off, at its limit once it serves one session: the next gets 503.
	v2, err := rtcclient.Play(ctx, api, c.HTTPURL(), room, asViewer(t, room))
	require.NoError(t, err)
	defer v2.Close()
	_, err = rtcclient.Play(ctx, api, c.HTTPURL(), room, asViewer(t, room))
	var he *rtcclient.HTTPError
	require.True(t, errors.As(err, &he), "%v", err)
	require.Equal(t, 503, he.Status)
}
