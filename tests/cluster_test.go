package tests

import (
	"context"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/cmd/jetmedia/app"
	"github.com/jetmedia/jetmedia/projections"
	"github.com/jetmedia/jetmedia/tests/rtcclient"
	"github.com/jetmedia/jetmedia/tests/testports"
)

// TestTwoServersLeaf: node b is a media-only leaf of hub a (b has no JetStream and uses a's
// through the leaf connection). Publish on a, two viewers on b: the leaf connection's own
// counters show each RTP packet crossed from a to b once, not once per viewer.
func TestTwoServersLeaf(t *testing.T) {
	a, b := startLeafPair(t)

	crossed := func() uint64 {
		lz, err := a.Server().NATS().Leafz(&server.LeafzOptions{})
		require.NoError(t, err)
		var n uint64
		for _, l := range lz.Leafs {
			n += uint64(l.OutMsgs)
		}
		return n
	}
	publishOnAPlayOnB(t, a, b, crossed)
}

// TestTwoServersRoutes: nodes a and b form one cluster by routes, both running JetStream (the
// EVENTS stream and rooms bucket live once in the cluster). Publish on a, two viewers on b:
// the route counters show each RTP packet crossed once.
func TestTwoServersRoutes(t *testing.T) {
	a, b := startRoutedPair(t, "east1", "east2")
	crossed := func() uint64 {
		rz, err := a.Server().NATS().Routez(&server.RoutezOptions{})
		require.NoError(t, err)
		var n uint64
		for _, r := range rz.Routes {
			if r.Account != "$SYS" { // the system account's route carries raft, not media
				n += uint64(r.OutMsgs)
			}
		}
		return n
	}
	publishOnAPlayOnB(t, a, b, crossed)
}

func publishOnAPlayOnB(t *testing.T, a, b *app.Node, crossed func() uint64) {
	api := clientAPI(t)
	room := newRoom("pair")
	ctx := ctxT(t, 60*time.Second)

	pub, err := rtcclient.Publish(ctx, api, a.HTTPURL(), room, asPublisher(t, room))
	require.NoError(t, err)
	defer pub.Close(true)
	require.Eventually(t, func() bool {
		r, err := projections.LoadRoom(ctx, b.Rooms(), room)
		return err == nil && len(r.Tracks) == 2
	}, 15*time.Second, 20*time.Millisecond, "b sees a's tracks in the rooms bucket")

	v1, err := rtcclient.Play(ctx, api, b.HTTPURL(), room, asViewer(t, room))
	require.NoError(t, err)
	defer v1.Close()
	v2, err := rtcclient.Play(ctx, api, b.HTTPURL(), room, asViewer(t, room))
	require.NoError(t, err)
	defer v2.Close()
	for _, v := range []*rtcclient.Viewer{v1, v2} {
		require.Eventually(t, func() bool { return v.Video.Load() > 30 && v.Audio.Load() > 30 },
			15*time.Second, 20*time.Millisecond)
	}

	// Over a steady window: packets a put on media subjects, messages a sent to b, and
	// packets b took off them (one subscription per track for both viewers). The window spans
	// three lease periods (2 s each), so that b's periodic control traffic weighs about the
	// same in every run.
	sentBefore, crossedBefore, recvBefore := a.Media().Sent, crossed(), b.Media().Received
	time.Sleep(3 * app.Defaults().Presence.Renew)
	sent, cross, recv := a.Media().Sent-sentBefore, crossed()-crossedBefore, b.Media().Received-recvBefore
	t.Logf("window: a published %d RTP packets, %d messages crossed a->b, b received %d", sent, cross, recv)
	require.Greater(t, sent, uint64(100))
	// Every packet crossed (the viewers got them all), and once: with two viewers a
	// per-viewer crossing would double the count. b's control traffic shares the connection:
	// classified by subject on the leaf pair (2026-12-07), ~30-48 messages per 6 s: idle
	// heartbeats and expired pulls of b's ordered consumers, replies to b's lease renewals
	// and lease reads, direct gets of the projector lease (each second) and of the room's
	// tracks (the WHEP recheck), which is at most a quarter of the media at 80 packets/s.
	require.GreaterOrEqual(t, cross, sent-5)
	require.Less(t, cross, sent+sent/4)
	require.InDelta(t, float64(sent), float64(recv), float64(sent)/20+5)
}

// freePorts reserves n loopback ports for this test (see testports: asking the kernel for :0
// and closing races with parallel test packages).
func freePorts(t *testing.T, n int) []int {
	return testports.Reserve(t, n)
}

// startLeafPair starts hub a (JetStream) and b, a media-only leaf of a that uses a's
// JetStream through the leaf connection.
func startLeafPair(t *testing.T) (a, b *app.Node) {
	cfgA := nodeConfig(t, "hub")
	cfgA.LeafListen = "127.0.0.1:0"
	a = startNode(t, cfgA)
	cfgB := nodeConfig(t, "edge")
	cfgB.Hub = a.Server().LeafURL()
	cfgB.JetStream = false
	return a, startNode(t, cfgB)
}

// startRoutedPair starts two nodes that form one cluster by routes, both running JetStream.
// They start together: JetStream's meta group needs both to elect a leader.
func startRoutedPair(t *testing.T, nameA, nameB string) (a, b *app.Node) {
	return startRoutedPairWith(t, nameA, nameB, nil)
}

// startRoutedPairWith is startRoutedPair with each node's configuration changed by mutate.
func startRoutedPairWith(t *testing.T, nameA, nameB string, mutate func(i int, cfg *app.Config)) (a, b *app.Node) {
	ports := freePorts(t, 2)
	routes := []string{"nats://127.0.0.1:" + strconv.Itoa(ports[0]), "nats://127.0.0.1:" + strconv.Itoa(ports[1])}
	cfgs := make([]app.Config, 2)
	for i, name := range []string{nameA, nameB} {
		cfgs[i] = nodeConfig(t, name)
		cfgs[i].NATSListen = "127.0.0.1:0"
		cfgs[i].ClusterListen = "127.0.0.1:" + strconv.Itoa(ports[i])
		cfgs[i].Routes = routes
		if mutate != nil {
			mutate(i, &cfgs[i])
		}
	}
	nodes := make([]*app.Node, 2)
	errs := make([]error, 2)
	var wg sync.WaitGroup
	for i := range cfgs {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			nodes[i], errs[i] = app.Start(ctx, cfgs[i])
		})
	}
	wg.Wait()
	for i := range nodes {
		if nodes[i] != nil {
			t.Cleanup(func() { _ = nodes[i].Close() })
		}
		require.NoError(t, errs[i])
	}
	return nodes[0], nodes[1]
}
