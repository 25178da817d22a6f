package cluster

import (
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/cmd/jetmedia/app"
	"github.com/jetmedia/jetmedia/tests/rtcclient"
)

// gatewayConf is a region's --nats-config: a TLS gateway (both sides verify the other's
// certificate) to the other region. Everything else comes from the node's flags.
const gatewayConf = `gateway {
  name: %s
  listen: "127.0.0.1:%d"
  tls { cert_file: %q, key_file: %q, ca_file: %q, verify: true, timeout: 5 }
  gateways: [ { name: %s, urls: ["nats://127.0.0.1:%d"] } ]
}
`

// startRegions starts one node in each of two regions, east and west, joined by a TLS gateway
// configured in --nats-config files: one supercluster, one JetStream, one log.
func startRegions(t testing.TB) (east, west *app.Node, ports []int, tlsFiles [3]string) {
	caFile, certFile, keyFile := testCA(t)
	tlsFiles = [3]string{caFile, certFile, keyFile}
	ports = freePorts(t, 4) // gateway ports, then route ports
	cfgs := make([]app.Config, 2)
	for i, region := range []string{"east", "west"} {
		other := 1 - i
		cfgs[i] = nodeConfig(t, region+"1")
		cfgs[i].ClusterName = region
		// A one-node region: JetStream in a supercluster wants configured routes, so the node
		// names its own.
		cfgs[i].ClusterListen, cfgs[i].NATSListen = "127.0.0.1:"+strconv.Itoa(ports[2+i]), "127.0.0.1:0"
		cfgs[i].Routes = []string{"nats://" + cfgs[i].ClusterListen}
		cfgs[i].Zone = region
		cfgs[i].NATSConfig = writeFile(t, region+".conf", gatewayConf, region, ports[i], certFile, keyFile, caFile,
			[]string{"east", "west"}[other], ports[other])
	}
	nodes := startNodes(t, cfgs...)
	return nodes[0], nodes[1], ports, tlsFiles
}

// TestSuperclusterGateway: two regions joined by a TLS gateway from --nats-config files form
// one system: the gateway is up and encrypted, both regions read the same log and rooms
// bucket, a WHIP publisher in east plays in west, and the gateway's own counters show each
// RTP packet crossed once while west had a viewer and none after it left.
func TestSuperclusterGateway(t *testing.T) {
	east, west, _, _ := startRegions(t)
	gz, err := east.Server().NATS().Gatewayz(&server.GatewayzOptions{})
	require.NoError(t, err)
	require.Contains(t, gz.OutboundGateways, "west")
	require.NotEmpty(t, gz.OutboundGateways["west"].Connection.TLSVersion, "the gateway runs TLS")

	ctx := ctxT(t, 2*time.Minute)
	api := clientAPI(t)
	room := newRoom("gw")
	pub, err := rtcclient.Publish(ctx, api, east.HTTPURL(), room, asPublisher(t, room))
	require.NoError(t, err)
	defer pub.Close(true)
	waitTracks(t, west, room, 2)
	require.Equal(t, ids(roomEvents(t, east.JetStream(), room)), ids(roomEvents(t, west.JetStream(), room)), "one log")

	// crossed counts the messages and bytes (payload and headers, as the server counts them)
	// east's gateway connection sent to west.
	crossed := func() (msgs, bytes uint64) {
		gz, err := east.Server().NATS().Gatewayz(&server.GatewayzOptions{Name: "west"})
		require.NoError(t, err)
		if og := gz.OutboundGateways["west"]; og != nil && og.Connection != nil {
			return uint64(og.Connection.OutMsgs), uint64(og.Connection.OutBytes)
		}
		return 0, 0
	}
	// published counts the bytes east's media connection published (its RTP).
	published := func() uint64 {
		cz, err := east.Server().NATS().Connz(&server.ConnzOptions{})
		require.NoError(t, err)
		for _, c := range cz.Conns {
			if c.Name == east.Name()+"-rtp" {
				return uint64(c.InBytes)
			}
		}
		t.Fatalf("no connection %s-rtp on %s", east.Name(), east.Name())
		return 0
	}
	v, err := rtcclient.Play(ctx, api, west.HTTPURL(), room, asViewer(t, room))
	require.NoError(t, err)
	require.Eventually(t, func() bool { return v.Video.Load() > 30 && v.Audio.Load() > 30 },
		15*time.Second, 20*time.Millisecond, "west's viewer plays east's publisher")
	// The gateway connection also carries the supercluster's JetStream traffic (raft, KV
	// watches, lease renewals), so media crossings are the difference between a window with a
	// viewer in west and one without.
	type counts struct{ sent, cross, recv, crossBytes, pubBytes uint64 }
	window := func() counts {
		sent0, recv0, pub0 := east.Media().Sent, west.Media().Received, published()
		cross0, bytes0 := crossed()
		time.Sleep(3 * time.Second)
		cross, bytes := crossed()
		return counts{east.Media().Sent - sent0, cross - cross0, west.Media().Received - recv0, bytes - bytes0, published() - pub0}
	}
	w1 := window()
	sent1, cross1, recv1 := w1.sent, w1.cross, w1.recv
	t.Logf("viewer in west: east published %d RTP packets, %d gateway messages east->west, west received %d", sent1, cross1, recv1)
	require.NoError(t, v.Close())
	time.Sleep(2 * time.Second) // west's interest goes; the gateway learns it
	w2 := window()
	sent2, cross2 := w2.sent, w2.cross
	t.Logf("no viewer in west: east published %d RTP packets, %d gateway messages east->west", sent2, cross2)
	// Gateway bytes per published byte: the window with the viewer, less the base traffic of
	// the window without (scaled to the same packet count), over the RTP bytes east published.
	mediaBytes := float64(w1.crossBytes) - float64(w2.crossBytes)*float64(sent1)/float64(sent2)
	t.Logf("gateway bytes east->west per published RTP byte: %.3f (%d gateway bytes with the viewer, %d without, %d RTP bytes published)",
		mediaBytes/float64(w1.pubBytes), w1.crossBytes, w2.crossBytes, w1.pubBytes)
	require.Positive(t, w1.pubBytes)
	require.Greater(t, sent1, uint64(30)) // ~80/s; far fewer under -race on a busy machine
	require.Greater(t, sent2, uint64(30))
	require.InDelta(t, float64(sent1), float64(recv1), float64(sent1)/20+5, "every packet reached west")
	// Base traffic (~15 in 3 s) stays well below what media crossing would add (one per packet).
	require.Less(t, cross2, sent2/2+20, "media does not cross a gateway without a viewer beyond it")
	// Once per packet: not twice (the base traffic is well below a packet count).
	media := int64(cross1) - int64(cross2)*int64(sent1)/int64(sent2)
	t.Logf("media crossings with the viewer: about %d for %d packets", media, sent1)
	require.InDelta(t, float64(sent1), float64(media), float64(sent1)/5+20)
}

// TestLinksNeedCredentials: a server that presents no credentials joins neither a region's
// routes nor its gateway (even with a certificate the gateway's TLS accepts); the same server
// with the link credentials every node derives from the system's key joins the routes, so the
// refusal is the credentials'.
func TestLinksNeedCredentials(t *testing.T) {
	east, _, ports, tlsFiles := startRegions(t)
	caFile, certFile, keyFile := tlsFiles[0], tlsFiles[1], tlsFiles[2]
	routeURL, err := url.Parse(east.Server().RouteURL())
	require.NoError(t, err)

	rogue := func(name string, opts *server.Options) *server.Server {
		opts.ServerName, opts.Host, opts.Port, opts.NoSigs = name, "127.0.0.1", -1, true
		s, err := server.NewServer(opts)
		require.NoError(t, err)
		s.Start()
		t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
		require.True(t, s.ReadyForConnections(10*time.Second))
		return s
	}
	noCreds := rogue("rogue-route", &server.Options{Cluster: server.ClusterOpts{Name: "east", Host: "127.0.0.1", Port: -1},
		Routes: []*url.URL{routeURL}})
	gwTLS, err := server.GenTLSConfig(&server.TLSConfigOpts{CertFile: certFile, KeyFile: keyFile, CaFile: caFile, Verify: true})
	require.NoError(t, err)
	gwTLS.RootCAs = gwTLS.ClientCAs // it dials out
	gwURL, err := url.Parse("nats://127.0.0.1:" + strconv.Itoa(ports[0]))
	require.NoError(t, err)
	gwRogue := rogue("rogue-gateway", &server.Options{Gateway: server.GatewayOpts{Name: "rogue", Host: "127.0.0.1", Port: -1,
		TLSConfig: gwTLS, TLSTimeout: 5,
		Gateways: []*server.RemoteGatewayOpts{{Name: "east", URLs: []*url.URL{gwURL}}}}})

	time.Sleep(3 * time.Second) // nats-server retries a refused link every second
	require.Zero(t, noCreds.NumRoutes(), "a route without credentials is refused")
	require.Zero(t, gwRogue.NumOutboundGateways(), "a gateway without credentials is refused")
	gz, err := east.Server().NATS().Gatewayz(&server.GatewayzOptions{})
	require.NoError(t, err)
	require.NotContains(t, gz.InboundGateways, "rogue")

	withCreds := *routeURL
	withCreds.User = url.UserPassword("jetmedia-link", testKey.Derive("nats-links"))
	joined := rogue("with-creds", &server.Options{Cluster: server.ClusterOpts{Name: "east", Host: "127.0.0.1", Port: -1},
		Routes: []*url.URL{&withCreds}})
	require.Eventually(t, func() bool { return joined.NumRoutes() > 0 }, 10*time.Second, 50*time.Millisecond,
		"the same server with the link credentials joins")
}
