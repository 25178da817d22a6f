package natsnode_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/pipeline/eventlog"
	"github.com/jetmedia/jetmedia/pipeline/natsnode"
)

// TestEdgeDirectGetAcrossGateway pins down why an edge's direct gets of the region's streams
// time out in a supercluster (docs/cluster.md, "Direct gets over an edge's link"): regions
// east and west (one server each, joined by a gateway, one JetStream domain), the rooms
// bucket placed in east, an edge (own domain) on each region's server. A KV get (a direct get
// of the bucket's stream, AllowDirect) answers on west's server itself and on east's edge,
// and times out on west's edge only, whose request must cross the gateway after its link:
// nats-server (v2.15.2, leafnode.go processInboundLeafMsg) sends a leaf's message to the
// gateways with checkLeafQF, which skips every queue group the leaf's message did not name,
// and the direct-get subscriptions are queue subscriptions (group "_sys_") the edge cannot
// name (it knows only the hub's plain interest in the domain's API prefix, which the hub maps
// to $JS.API.DIRECT.>). Delivery inside the hub's cluster has an exception for such mapped
// messages (pmrIgnoreEmptyQueueFilter); the gateway path has none. The stream API answers
// everywhere: every server serves it through the system account, no queue group involved.
// Should this start answering (a nats-server upgrade), the edge's region catalog
// (cmd/jetmedia/app/edgecatalog.go) may read keys and the room's newest event by direct get.
func TestEdgeDirectGetAcrossGateway(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	dir := t.TempDir()
	gw := map[string]int{"east": freePort(t), "west": freePort(t)}
	routes := map[string]int{"east": freePort(t), "west": freePort(t)}
	start := func(region, other string) *natsnode.Server {
		conf := filepath.Join(dir, region+".conf")
		require.NoError(t, os.WriteFile(conf, fmt.Appendf(nil,
			"gateway { name: %s, listen: \"127.0.0.1:%d\", gateways: [ { name: %s, urls: [\"nats://127.0.0.1:%d\"] } ] }\n",
			region, gw[region], other, gw[other]), 0o600))
		// JetStream across gateways wants routes configured: one to itself.
		route := fmt.Sprintf("127.0.0.1:%d", routes[region])
		s, err := natsnode.StartServer(ctx, natsnode.ServerConfig{Name: region + "1", JetStream: true, StoreDir: t.TempDir(),
			Listen: "127.0.0.1:0", ConfigFile: conf,
			Cluster: natsnode.ClusterConfig{Name: region, Listen: route, Routes: []string{"nats://" + route}},
			Leaf:    natsnode.LeafConfig{Listen: "127.0.0.1:0"}})
		require.NoError(t, err)
		t.Cleanup(s.Shutdown)
		return s
	}
	var east *natsnode.Server
	started := make(chan struct{})
	go func() { defer close(started); east = start("east", "west") }() // each waits for the other
	west := start("west", "east")
	<-started
	require.NotNil(t, east)
	edge := func(name string, hub *natsnode.Server) *nats.Conn {
		s, err := natsnode.StartServer(ctx, natsnode.ServerConfig{Name: name, JetStream: true, StoreDir: t.TempDir(),
			Domain: "edge-" + name, Leaf: natsnode.LeafConfig{Hub: hub.LeafURL(), Isolate: []string{"$KV.>"}}})
		require.NoError(t, err)
		t.Cleanup(s.Shutdown)
		nc, err := s.Connect("probe")
		require.NoError(t, err)
		t.Cleanup(nc.Close)
		return nc
	}

	enc, err := east.Connect("east")
	require.NoError(t, err)
	defer enc.Close()
	ejs, err := jetstream.New(enc)
	require.NoError(t, err)
	cfg := eventlog.RoomsBucketConfig(eventlog.BucketRooms, eventlog.StorageConfig{})
	cfg.Placement = &jetstream.Placement{Cluster: "east"}
	var kv jetstream.KeyValue
	require.Eventually(t, func() bool { // the meta group needs both regions
		cctx, ccancel := context.WithTimeout(ctx, 3*time.Second)
		defer ccancel()
		kv, err = ejs.CreateKeyValue(cctx, cfg)
		return err == nil
	}, time.Minute, 100*time.Millisecond, "the bucket, in east")
	_, err = kv.Put(ctx, "r.room", []byte("{}"))
	require.NoError(t, err)
	wnc, err := west.Connect("west")
	require.NoError(t, err)
	defer wnc.Close()

	for _, tc := range []struct {
		name    string
		nc      *nats.Conn
		domain  string
		answers bool
	}{
		{"a client of west's server", wnc, "", true},
		{"east's edge", edge("eastedge", east), natsnode.DefaultDomain, true},
		{"west's edge", edge("westedge", west), natsnode.DefaultDomain, false},
	} {
		js, err := jetstream.New(tc.nc)
		if tc.domain != "" {
			js, err = jetstream.NewWithDomain(tc.nc, tc.domain)
		}
		require.NoError(t, err)
		var rkv jetstream.KeyValue
		require.Eventually(t, func() bool { // the stream API: answers everywhere once linked
			rkv, err = js.KeyValue(ctx, eventlog.BucketRooms)
			return err == nil
		}, 20*time.Second, 50*time.Millisecond, "%s: the bucket's info", tc.name)
		gctx, gcancel := context.WithTimeout(ctx, 2*time.Second)
		_, err = rkv.Get(gctx, "r.room")
		gcancel()
		if tc.answers {
			require.NoError(t, err, "%s: a direct get", tc.name)
		} else {
			require.ErrorIs(t, err, context.DeadlineExceeded, "%s: a direct get", tc.name)
		}
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
