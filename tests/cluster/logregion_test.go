package cluster

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/cmd/jetmedia/app"
	"github.com/jetmedia/jetmedia/pipeline/eventlog"
	"github.com/jetmedia/jetmedia/projections/presence"
	"github.com/jetmedia/jetmedia/tests/rtcclient"
	"github.com/jetmedia/jetmedia/tests/testlog"
)

// TestLogRegionWhateverStartOrder: with --log-region east on every node, region west (w1,
// whose JetStream works alone: it only accepts gateways) starts first and does not declare the
// log: it waits, saying so, until east's three nodes (dialling west's gateway) come up and
// declare it. The log and the buckets are R3 in east (without the flag, w1 declared them R1 in
// west, and east's nodes could not raise them to R3 there), and a publisher on w1 appends
// into east's log across the gateway.
func TestLogRegionWhateverStartOrder(t *testing.T) {
	ports := freePorts(t, 4) // gateway ports of e1, e2, e3, w1
	west := routedConfigs(t, "w1")
	west[0].ClusterName, west[0].Zone, west[0].LogRegion = "west", "west", "east"
	west[0].NATSConfig = writeFile(t, "w1.conf", listenGatewayConf, "west", ports[3])
	waiting := &testlog.Capture{Min: slog.LevelWarn}
	west[0].Logger = slog.New(waiting)
	east := routedConfigs(t, "e1", "e2", "e3")
	for i := range east {
		east[i].ClusterName, east[i].Zone, east[i].LogRegion = "east", "east", "east"
		east[i].NATSConfig = writeFile(t, east[i].Name+".conf", plainGatewayConf, "east", ports[i], "west", ports[3])
	}

	var w1 *app.Node
	var w1Err error
	var wg sync.WaitGroup
	wg.Go(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		w1, w1Err = app.Start(ctx, west[0])
	})
	t.Cleanup(func() {
		wg.Wait()
		if w1 != nil {
			_ = w1.Close()
		}
	})
	require.Eventually(t, func() bool { return waiting.Has("waiting for the log's region") }, 30*time.Second,
		100*time.Millisecond, "w1 waits for east to declare the log")

	eastNodes := startNodes(t, east...)
	wg.Wait()
	require.NoError(t, w1Err, "w1 starts once east has declared the log")

	ctx := ctxT(t, time.Minute)
	for _, name := range []string{eventlog.StreamEvents, "KV_" + eventlog.BucketRooms, "KV_" + presence.BucketNodes} {
		s, err := w1.JetStream().Stream(ctx, name)
		require.NoError(t, err, name)
		info := s.CachedInfo()
		require.Equal(t, 3, info.Config.Replicas, "%s keeps east's replicas", name)
		require.NotNil(t, info.Cluster, name)
		require.Equal(t, "east", info.Cluster.Name, "%s lives in east", name)
	}

	room := newRoom("region")
	pub, err := rtcclient.Publish(ctx, clientAPI(t), w1.HTTPURL(), room, asPublisher(t, room))
	require.NoError(t, err)
	defer pub.Close(true)
	waitTracks(t, eastNodes[1], room, 2)
	require.NotEmpty(t, roomEvents(t, eastNodes[1].JetStream(), room), "w1's events are in east's log")
}
