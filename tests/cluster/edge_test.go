package cluster

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/cmd/jetmedia/app"
	"github.com/jetmedia/jetmedia/events"
	"github.com/jetmedia/jetmedia/pipeline/eventlog"
	"github.com/jetmedia/jetmedia/projections"
	"github.com/jetmedia/jetmedia/tests/cutproxy"
	"github.com/jetmedia/jetmedia/tests/rtcclient"
	"github.com/jetmedia/jetmedia/tests/testlog"
)

// edgeCut is how long TestEdgeLogsWhileCut keeps the edge's link down: the 30 s
// (longer than every lease, raft and reconnect timer involved; the test takes ~45 s).
const edgeCut = 30 * time.Second

// TestEdgeLogsWhileCut: region1 is a node of the region (a hub: --leaf-listen); edge1 is a
// leaf with JetStream of its own (its own domain), linked through a TCP proxy that stands for
// the network (the hub's --nats-config keeps it from advertising its own leaf URL). Linked, a publisher on the edge reaches the region's log and a viewer on the
// region plays it. With the link cut, a publisher joins, publishes and leaves on the edge:
// the edge takes the session and logs it; the region's log has none of it. After the link
// heals, the region's log holds exactly the edge's events of that room, in the edge's order,
// once, and the region's rooms bucket shows the room empty.
func TestEdgeLogsWhileCut(t *testing.T) {
	hub, edge, proxy := startCutEdge(t, nil)
	require.Equal(t, "edge-edge1", edge.Server().Domain())
	require.Equal(t, "jetmedia", hub.Server().Domain())

	ctx := ctxT(t, 3*time.Minute)
	require.Eventually(t, func() bool {
		ok, err := eventlog.EdgeSourced(ctx, hub.JetStream(), "edge-edge1")
		return err == nil && ok
	}, 20*time.Second, 100*time.Millisecond, "the region's log sources the edge's")

	api := clientAPI(t)
	// Linked: the edge's publisher is in the region's rooms bucket, and plays on the region.
	linked := newRoom("linked")
	pub, err := rtcclient.Publish(ctx, api, edge.HTTPURL(), linked, asPublisher(t, linked))
	require.NoError(t, err)
	waitTracks(t, hub, linked, 2)
	v, err := rtcclient.Play(ctx, api, hub.HTTPURL(), linked, asViewer(t, linked))
	require.NoError(t, err)
	require.Eventually(t, func() bool { return v.Video.Load() > 30 && v.Audio.Load() > 30 },
		15*time.Second, 20*time.Millisecond, "the region's viewer gets the edge's media")
	require.NoError(t, v.Close())
	require.NoError(t, pub.Close(true))
	waitPeers(t, hub, linked, 0)
	// The region's log has every event the edge wrote for the room, in the edge's order (the
	// region's viewer wrote its own events in between).
	require.Equal(t, ids(roomEvents(t, edge.JetStream(), linked)), ids(byNode(roomEvents(t, hub.JetStream(), linked), "edge1")))

	// Cut: a whole session on the edge.
	proxy.Cut()
	cutAt := time.Now()
	offline := newRoom("offline")
	pub, err = rtcclient.Publish(ctx, api, edge.HTTPURL(), offline, asPublisher(t, offline))
	require.NoError(t, err, "the edge takes a session while its link is down")
	waitTracks(t, edge, offline, 2)
	time.Sleep(time.Second)
	require.NoError(t, pub.Close(true))
	waitPeers(t, edge, offline, 0)
	edgeLog := roomEvents(t, edge.JetStream(), offline)
	require.GreaterOrEqual(t, len(edgeLog), 4, "joined, 2 tracks published, ..., left")
	require.Equal(t, events.TypePeerLeft, edgeLog[len(edgeLog)-1].Type)
	require.Empty(t, roomEvents(t, hub.JetStream(), offline), "the region cannot have them yet")

	time.Sleep(time.Until(cutAt.Add(edgeCut)))
	proxy.Heal()
	healed := time.Now()
	// nats-server retries a stream source it cannot reach with a backoff (a request sent while
	// cut waits 30 s, then 10 s more per failure): on its own the region got the events ~28 s
	// after the heal. The edge has the source restarted 2 s after its link returns
	// (eventlog.RestartEdgeSource), and the events come ~3 s after the heal; 15 s leaves room
	// for -race on a loaded machine and fails the backoff.
	require.Eventually(t, func() bool {
		return len(roomEvents(t, hub.JetStream(), offline)) >= len(edgeLog)
	}, 15*time.Second, 100*time.Millisecond, "the edge's events reach the region's log")
	t.Logf("link healed -> the region's log has the offline room's %d events: %s", len(edgeLog), time.Since(healed).Round(time.Millisecond))
	time.Sleep(time.Second) // a second copy, were there one, would have arrived by now
	require.Equal(t, ids(edgeLog), ids(roomEvents(t, hub.JetStream(), offline)), "in order, once")
	waitPeers(t, hub, offline, 0)

	// Every room's chain holds in the region's log. The linked room had two writers, the
	// edge (its publisher) and the region (its viewer's subscription): the edge's events link
	// to the edge's previous ones past the region's (events.Chain, "Two writers").
	requireChainsHold(t, hub.JetStream())
	chains, err := projections.VerifyChains(ctx, hub.JetStream(), linked, nil)
	require.NoError(t, err)
	require.Len(t, chains, 1)
	t.Logf("linked room in the region's log: %d events, %d linked to their writer's previous, %d writer starts, unlinked %v",
		chains[0].Events, chains[0].WriterLinks, chains[0].WriterStarts, chains[0].Unlinked())
	require.Positive(t, chains[0].WriterLinks, "the edge's events after the region's viewer link past it")
}

// edgeEndCut is how long TestEdgeViewerOfRegionRoomAcrossCut keeps the edge's link down:
// long enough for the edge's watch of the region's bucket to back off to its longest wait.
const edgeEndCut = 8 * time.Second

// TestEdgeViewerOfRegionRoomAcrossCut: a viewer on an edge plays a room published in the region
// (region1, the edge's hub, linked through a TCP proxy). With the link cut, the region's
// publisher leaves: the edge cannot hear of it, and its viewer stays. Once the link heals,
// the edge's watch of the region's bucket, which starts after the last marker it saw, tells
// the end and the viewer ends; the outage costs that watch one WARN at most. The room then has
// two writers, the region (its creator and publisher) and the edge (its viewer, whose events
// begin with the edge's own room.created): every chain of the region's log holds.
func TestEdgeViewerOfRegionRoomAcrossCut(t *testing.T) {
	debug, warns := &testlog.Capture{Min: slog.LevelDebug}, &testlog.Capture{Min: slog.LevelWarn}
	hub, edge, proxy := startCutEdge(t, func(h slog.Handler) slog.Handler { return teeHandler{h, debug, warns} })

	ctx := ctxT(t, 2*time.Minute)
	api := clientAPI(t)
	room := newRoom("regional")
	pub, err := rtcclient.Publish(ctx, api, hub.HTTPURL(), room, asPublisher(t, room))
	require.NoError(t, err)
	defer pub.Close(true)
	waitTracks(t, hub, room, 2)
	v, err := rtcclient.UntilPublished(ctx, func() (*rtcclient.Viewer, error) {
		return rtcclient.Play(ctx, api, edge.HTTPURL(), room, asViewer(t, room))
	})
	require.NoError(t, err)
	defer v.Close()
	require.Eventually(t, func() bool { return v.Video.Load() > 30 && v.Audio.Load() > 30 },
		15*time.Second, 20*time.Millisecond, "the edge's viewer gets the region's media")

	proxy.Cut()
	cutAt := time.Now()
	require.NoError(t, pub.Close(true))
	waitTracks(t, hub, room, 0)
	time.Sleep(time.Until(cutAt.Add(edgeEndCut)))
	require.Positive(t, edge.ForwardedTracks(), "the region's end cannot reach the edge while cut")
	proxy.Heal()
	healed := time.Now()
	require.Eventually(t, func() bool { return edge.ForwardedTracks() == 0 }, 20*time.Second, 10*time.Millisecond,
		"the edge's viewer hears of the region's publisher's end after the heal")
	t.Logf("link healed -> the edge's viewer of the region's publisher ended: %s (found by the recheck: %t)",
		time.Since(healed).Round(time.Millisecond), debug.Has("found by the recheck"))
	require.LessOrEqual(t, len(warns.Matching("bucket watch")), 1, "one WARN per outage: %q", warns.Matching("bucket watch"))

	// The edge's events of the room (its room.created, the viewer's join, subscriptions and
	// leave) reach the region's log, and its chains hold there.
	require.Eventually(t, func() bool {
		for _, e := range byNode(roomEvents(t, hub.JetStream(), room), "edge1") {
			if e.Type == events.TypePeerLeft {
				return true
			}
		}
		return false
	}, 90*time.Second, 100*time.Millisecond, "the edge's viewer's leave reaches the region's log")
	requireChainsHold(t, hub.JetStream())
	chains, err := projections.VerifyChains(ctx, hub.JetStream(), room, nil)
	require.NoError(t, err)
	require.Len(t, chains, 1)
	t.Logf("the room in the region's log: %d events, %d linked to their writer's previous, %d writer starts, unlinked %v",
		chains[0].Events, chains[0].WriterLinks, chains[0].WriterStarts, chains[0].Unlinked())
	require.Positive(t, chains[0].WriterStarts, "the edge's room.created starts its chain")
}

// startCutEdge starts region1, a node of the region (a hub: --leaf-listen), and edge1, a leaf
// with JetStream of its own (its own domain) linked to it through a cut proxy; logs, when
// set, wraps the edge's log handler.
func startCutEdge(t *testing.T, logs func(slog.Handler) slog.Handler) (hub, edge *app.Node, proxy *cutproxy.Proxy) {
	t.Helper()
	hubCfg := nodeConfig(t, "region1")
	hubCfg.LeafListen = "127.0.0.1:0"
	// The hub must not tell the edge its own leaf URL: the edge would reconnect there past the
	// proxy. The file's setting stays under the flags' listen address.
	hubCfg.NATSConfig = writeFile(t, "hub.conf", "leafnodes { no_advertise: true }\n")
	hub = startNodes(t, hubCfg)[0]
	proxy = cutproxy.New(t, strings.TrimPrefix(hub.Server().LeafURL(), "nats-leaf://"))
	edgeCfg := nodeConfig(t, "edge1")
	edgeCfg.Hub = "nats-leaf://" + proxy.Addr()
	if logs != nil {
		edgeCfg.Logger = slog.New(logs(edgeCfg.Logger.Handler()))
	}
	return hub, startNodes(t, edgeCfg)[0], proxy
}

// teeHandler hands every record to each of its handlers that takes its level.
type teeHandler []slog.Handler

func (h teeHandler) Enabled(ctx context.Context, l slog.Level) bool {
	for _, x := range h {
		if x.Enabled(ctx, l) {
			return true
		}
	}
	return false
}

func (h teeHandler) Handle(ctx context.Context, r slog.Record) error {
	for _, x := range h {
		if x.Enabled(ctx, r.Level) {
			_ = x.Handle(ctx, r.Clone())
		}
	}
	return nil
}

func (h teeHandler) WithAttrs(as []slog.Attr) slog.Handler {
	out := make(teeHandler, len(h))
	for i, x := range h {
		out[i] = x.WithAttrs(as)
	}
	return out
}

func (h teeHandler) WithGroup(name string) slog.Handler {
	out := make(teeHandler, len(h))
	for i, x := range h {
		out[i] = x.WithGroup(name)
	}
	return out
}

// byNode keeps the events node wrote.
func byNode(evs []events.Envelope, node string) []events.Envelope {
	var out []events.Envelope
	for _, e := range evs {
		if e.Node == node {
			out = append(out, e)
		}
	}
	return out
}

func loadRoom(t testing.TB, n *app.Node, room string) projections.Room {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	r, err := projections.LoadRoom(ctx, n.Rooms(), room)
	require.NoError(t, err)
	return r
}

func waitTracks(t testing.TB, n *app.Node, room string, want int) {
	t.Helper()
	require.Eventually(t, func() bool { return len(loadRoom(t, n, room).Tracks) == want },
		20*time.Second, 50*time.Millisecond, "%s: %d tracks in %s", n.Name(), want, room)
}

func waitPeers(t testing.TB, n *app.Node, room string, want int) {
	t.Helper()
	require.Eventually(t, func() bool { return len(loadRoom(t, n, room).Peers) == want },
		20*time.Second, 50*time.Millisecond, "%s: %d peers in %s", n.Name(), want, room)
}
