package forward_test

import (
	"context"
	"runtime"
	"testing"
	"time"
	"weak"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/egress/forward"
	"github.com/jetmedia/jetmedia/pipeline/mediabus"
	"github.com/jetmedia/jetmedia/pipeline/natsnode"
)

// A track's fan-out (its packet cache, ~0.6 MB) is released once its last viewer detached,
// even when the publisher sends nothing afterwards: on a node that publishes the track the
// media bus held the fan-out's Forward until the next packet pruned it, so a track that ended
// with its viewers kept it forever.
func TestHubReleasesFanout(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv, err := natsnode.StartServer(ctx, natsnode.ServerConfig{Name: "release"})
	require.NoError(t, err)
	t.Cleanup(srv.Shutdown)
	fb, err := srv.Connect("fb")
	require.NoError(t, err)
	t.Cleanup(fb.Close)
	rtpc, err := srv.Connect("rtp", nats.NoEcho())
	require.NoError(t, err)
	t.Cleanup(rtpc.Close)
	bus, err := mediabus.NewLocalMediaBus(fb, rtpc, srv.Interest)
	require.NoError(t, err)
	hub := forward.NewHub(bus)
	t.Cleanup(hub.Close)

	for _, local := range []bool{true, false} {
		track := "remote"
		var sender *mediabus.TrackSender
		if local {
			track = "local"
			sender = bus.Sender("r", track, "0") // published on this node
		}
		var c collector
		fan, detach, err := hub.Attach("r", track, forward.NewOutput(1, 96, &c))
		require.NoError(t, err)
		if sender != nil {
			require.NoError(t, sender.Send([]byte{0x80, 96, 0, 1, 0, 0, 0, 1, 0, 0, 0, 5, 0x10, 0x00}))
			require.Equal(t, 1, c.len())
		}
		gone := weak.Make(fan)
		fan = nil
		detach()
		require.Zero(t, hub.Tracks())
		runtime.GC()
		runtime.GC()
		require.True(t, gone.Value() == nil, "fan-out of the %s track still reachable after its last viewer left", track)
		runtime.KeepAlive(sender)
	}
}
