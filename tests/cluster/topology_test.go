package cluster

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/cmd/jetmedia/app"
	"github.com/jetmedia/jetmedia/tests/rtcclient"
)

// superGatewayConf is a region node's --nats-config: its TLS gateway, named for its region,
// listing the gateway of every node of the other region (as dev-cluster's plan writes it).
const superGatewayConf = `gateway {
  name: %s
  listen: "127.0.0.1:%d"
  tls { cert_file: %q, key_file: %q, ca_file: %q, verify: true, timeout: 5 }
  gateways: [ { name: %s, urls: [%s] } ]
}
`

// superRegion is one region of startSupercluster's system: three routed nodes, the first
// also the hub of the region's edge.
type superRegion struct {
	name  string
	nodes []*app.Node
	edge  *app.Node
}

// startSupercluster starts issue 13's topology in the test's process, the layout of
// tests/devcluster's Plan on ports of the package's helper: regions east and west of three
// routed nodes each (the log and buckets R3, in east by --log-region), joined by TLS gateways,
// and one edge per region (a leaf of the region's first node with a JetStream domain of its
// own). Placement is off: each session stays on the node it is sent to.
func startSupercluster(t *testing.T) (east, west *superRegion) {
	caFile, certFile, keyFile := testCA(t)
	names := []string{"east", "west"}
	gw := [2][]int{freePorts(t, 3), freePorts(t, 3)}
	urls := func(r int) string {
		var out []string
		for _, p := range gw[r] {
			out = append(out, strconv.Quote("nats://127.0.0.1:"+strconv.Itoa(p)))
		}
		return strings.Join(out, ", ")
	}
	var cfgs []app.Config
	for r, region := range names {
		rc := routedConfigs(t, region+"1", region+"2", region+"3")
		for i := range rc {
			rc[i].ClusterName, rc[i].Zone, rc[i].LogRegion = region, region, names[0]
			rc[i].Presence = app.Defaults().Presence
			rc[i].NATSConfig = writeFile(t, rc[i].Name+".conf", superGatewayConf, region, gw[r][i],
				certFile, keyFile, caFile, names[1-r], urls(1-r))
		}
		rc[0].LeafListen = "127.0.0.1:0"
		cfgs = append(cfgs, rc...)
	}
	nodes := startNodes(t, cfgs...) // together: the meta group spans both regions
	east = &superRegion{name: names[0], nodes: nodes[:3]}
	west = &superRegion{name: names[1], nodes: nodes[3:]}

	var edges []app.Config
	for _, r := range []*superRegion{east, west} {
		cfg := nodeConfig(t, r.name+"-edge")
		cfg.Hub, cfg.Zone, cfg.Placement = r.nodes[0].Server().LeafURL(), r.name, false
		edges = append(edges, cfg)
	}
	started := startNodes(t, edges...)
	east.edge, west.edge = started[0], started[1]
	for _, r := range [][2]*superRegion{{east, west}, {west, east}} {
		require.Equal(t, "edge-"+r[0].name+"-edge", r[0].edge.Server().Domain())
		for _, n := range r[0].nodes {
			require.Eventually(t, func() bool { return outbound(t, n, r[1].name).up }, 20*time.Second, 100*time.Millisecond,
				"%s has its own gateway link to %s", n.Name(), r[1].name)
			l := outbound(t, n, r[1].name)
			require.NotEmpty(t, l.tls, "the gateway runs TLS")
			t.Logf("%s's gateway link to %s: to port %d, TLS %s", n.Name(), r[1].name, l.port, l.tls)
		}
	}
	return east, west
}

// gwLink is what a node's outbound gateway connection to a region has sent.
type gwLink struct {
	up          bool
	port        int // the remote end's
	tls         string
	msgs, bytes uint64
}

// outbound reads n's outbound gateway connection to region.
func outbound(t *testing.T, n *app.Node, region string) gwLink {
	gz, err := n.Server().NATS().Gatewayz(&server.GatewayzOptions{Name: region})
	require.NoError(t, err)
	og := gz.OutboundGateways[region]
	if og == nil || og.Connection == nil {
		return gwLink{}
	}
	c := og.Connection
	return gwLink{up: true, port: c.Port, tls: c.TLSVersion, msgs: uint64(c.OutMsgs), bytes: uint64(c.OutBytes)}
}

// crossings sums what the region's nodes sent on their outbound gateway connections to the
// other region: each node of a region has its own.
func (r *superRegion) crossings(t *testing.T, other string) (msgs, bytes uint64) {
	for _, n := range r.nodes {
		l := outbound(t, n, other)
		msgs, bytes = msgs+l.msgs, bytes+l.bytes
	}
	return msgs, bytes
}

// rtpInBytes is what n's RTP connection published (bytes in, as the server counts them).
func rtpInBytes(t *testing.T, n *app.Node) uint64 {
	cz, err := n.Server().NATS().Connz(&server.ConnzOptions{})
	require.NoError(t, err)
	for _, c := range cz.Conns {
		if c.Name == n.Name()+"-rtp" {
			return uint64(c.InBytes)
		}
	}
	t.Fatalf("no connection %s-rtp on %s", n.Name(), n.Name())
	return 0
}

// TestSuperclusterTopology is issue 13's topology test: two regions of three routed nodes
// and an edge each, joined by TLS gateways. A WHIP publisher on east's edge plays on WHEP
// viewers on each of west's three nodes and on west's edge: every viewer receives what was
// published in a measured window, and the media crosses from east to west once per packet
// (summed over east's three outbound gateway connections), not once per viewer; after
// every west viewer closed, no media crosses (the gateways' base traffic aside).
func TestSuperclusterTopology(t *testing.T) {
	east, west := startSupercluster(t)
	ctx := ctxT(t, 3*time.Minute)
	api := clientAPI(t)
	room := newRoom("topo")
	pub, err := rtcclient.Publish(ctx, api, east.edge.HTTPURL(), room, asPublisher(t, room))
	require.NoError(t, err)
	t.Cleanup(func() { _ = pub.Close(true) })
	for _, n := range west.nodes {
		waitTracks(t, n, room, 2) // the edge's log reaches the region's, sourced
	}

	type viewer struct {
		at string
		v  *rtcclient.Viewer
	}
	westNodes := append(append([]*app.Node(nil), west.nodes...), west.edge)
	var viewers []viewer
	for _, n := range westNodes {
		pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		v, err := rtcclient.Play(pctx, api, n.HTTPURL(), room, asViewer(t, room))
		cancel()
		require.NoError(t, err, "a WHEP viewer on %s plays the room published on %s", n.Name(), east.edge.Name())
		t.Cleanup(func() { _ = v.Close() })
		viewers = append(viewers, viewer{at: n.Name(), v: v})
	}
	for _, v := range viewers {
		require.Eventually(t, func() bool { return v.v.Video.Load() > 30 && v.v.Audio.Load() > 30 },
			20*time.Second, 20*time.Millisecond, "the viewer on %s gets video and audio", v.at)
	}

	// A window: what east's edge published, what each west viewer received and what crossed
	// from east to west, over the same few seconds.
	type counts struct {
		sent, cross, crossBytes, pubBytes uint64
		got, bus                          []uint64 // per viewer: what it played, what its node's bus delivered
		took                              time.Duration
	}
	played := func() (got, bus []uint64) {
		for i, v := range viewers {
			got = append(got, uint64(v.v.Video.Load()+v.v.Audio.Load()))
			bus = append(bus, westNodes[i].Media().Received)
		}
		return got, bus
	}
	window := func() counts {
		sent0, pub0 := east.edge.Media().Sent, rtpInBytes(t, east.edge)
		got0, bus0 := played()
		cross0, bytes0 := east.crossings(t, west.name)
		start := time.Now()
		time.Sleep(4 * time.Second)
		cross, bytes := east.crossings(t, west.name)
		c := counts{sent: east.edge.Media().Sent - sent0, pubBytes: rtpInBytes(t, east.edge) - pub0,
			cross: cross - cross0, crossBytes: bytes - bytes0, took: time.Since(start)}
		got, bus := played()
		for i := range got {
			c.got, c.bus = append(c.got, got[i]-got0[i]), append(c.bus, bus[i]-bus0[i])
		}
		return c
	}
	w1 := window()
	t.Logf("%d viewers in west: east's edge published %d RTP packets (%d bytes to NATS), east's gateways sent west %d messages (%d bytes) in %v",
		len(viewers), w1.sent, w1.pubBytes, w1.cross, w1.crossBytes, w1.took.Round(time.Millisecond))
	for i, v := range viewers {
		t.Logf("  viewer on %s received %d packets (its node's media bus delivered %d)", v.at, w1.got[i], w1.bus[i])
	}

	for _, v := range viewers {
		require.NoError(t, v.v.Close())
	}
	for _, n := range westNodes {
		require.Eventually(t, func() bool { return n.ForwardedTracks() == 0 }, 20*time.Second, 50*time.Millisecond,
			"%s forwards nothing once its viewer left", n.Name())
	}
	// West's interest goes; east's gateways and the edge learn it. A liveness wait, not a
	// fixed pause (under -race on a loaded machine that can take longer): the edge's RTP
	// connection publishes nothing for a second.
	deadline := time.Now().Add(30 * time.Second)
	for before := rtpInBytes(t, east.edge); ; {
		time.Sleep(time.Second)
		now := rtpInBytes(t, east.edge)
		if now == before {
			break
		}
		require.True(t, time.Now().Before(deadline), "east's edge still publishes RTP 30 s after west's viewers left")
		before = now
	}
	w2 := window()
	t.Logf("no viewer in west: east's edge published %d RTP packets (%d bytes to NATS), east's gateways sent west %d messages (%d bytes) in %v",
		w2.sent, w2.pubBytes, w2.cross, w2.crossBytes, w2.took.Round(time.Millisecond))
	// The gateways also carry the supercluster's own traffic (the meta group spans both regions;
	// leases, watches, the edges' sources): a window with no publisher is the base.
	require.NoError(t, pub.Close(true))
	waitTracks(t, west.nodes[0], room, 0)
	w3 := window()
	t.Logf("no publisher: east's gateways sent west %d messages (%d bytes) in %v", w3.cross, w3.crossBytes, w3.took.Round(time.Millisecond))

	require.Greater(t, w1.sent, uint64(60)) // ~80/s; fewer under -race on a busy machine
	require.Greater(t, w2.sent, uint64(60))
	for i, v := range viewers {
		require.InDelta(t, float64(w1.sent), float64(w1.got[i]), float64(w1.sent)/20+10,
			"the viewer on %s received every packet published in the window", v.at)
	}
	// Media crossings: a window's messages less the base's, scaled to the window's length.
	beyondBase := func(w counts) (msgs, bytes float64) {
		scale := w.took.Seconds() / w3.took.Seconds()
		return float64(w.cross) - float64(w3.cross)*scale, float64(w.crossBytes) - float64(w3.crossBytes)*scale
	}
	media1, bytes1 := beyondBase(w1)
	media2, _ := beyondBase(w2)
	t.Logf("media crossings east->west: with %d viewers in west about %.0f for %d packets published (%.2f per packet), "+
		"%.3f gateway bytes per RTP byte published; without viewers about %.0f for %d packets",
		len(viewers), media1, w1.sent, media1/float64(w1.sent), bytes1/float64(w1.pubBytes), media2, w2.sent)
	require.InDelta(t, float64(w1.sent), media1, float64(w1.sent)/5+20, "once per packet, not once per viewer")
	require.Zero(t, w2.pubBytes, "east's edge hands no packet to NATS with no viewer beyond it")
	require.Less(t, media2, float64(w2.sent)/4+20, "no media crosses a gateway without a viewer beyond it")
}
