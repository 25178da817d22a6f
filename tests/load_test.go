package tests

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/cmd/jetmedia/app"
	"github.com/jetmedia/jetmedia/cmd/jetmedia/load"
)

// TestLoadAgainstNode runs `jetmedia load`'s engine for a few seconds against an in-process
// node: one 2 Mbit/s publisher, three subscribers. On loopback nothing may be lost, every
// subscriber gets media, and the figures hang together, the server's CPU and RSS read from its
// /metrics among them.
func TestLoadAgainstNode(t *testing.T) {
	// Defaults, not nodeConfig: no auth keys, so the node runs in dev mode and the tool mints
	// its clients' tokens at GET /dev/token, as it does against a developer's `jetmedia serve`.
	ncfg := app.Defaults()
	ncfg.Name, ncfg.DataDir, ncfg.HTTPAddr, ncfg.UDPPort, ncfg.Logger = "load", t.TempDir(), "127.0.0.1:0", 0, testLogger(t)
	node := startNode(t, ncfg)
	cfg := load.Defaults()
	cfg.URL = node.HTTPURL()
	cfg.Subscribers = 3
	cfg.Ramp = 500 * time.Millisecond
	cfg.Duration = 3 * time.Second
	// The server's CPU and RSS from its own /metrics (the process collector). In-process, the
	// "server" process is this test binary, tool and node together: the figures must be there
	// and plausible, not the node's alone.
	cfg.MetricsURL = node.HTTPURL() + "/metrics"
	rep, err := load.Run(ctxT(t, 60*time.Second), cfg)
	require.NoError(t, err)
	t.Logf("report: %+v", *rep)

	require.Equal(t, 3, rep.SubscribersJoined)
	require.Zero(t, rep.SubscribersFailed, rep.FirstError)
	require.Zero(t, rep.SubscribersNoMedia)
	require.Positive(t, rep.Sent.Packets)
	require.Positive(t, rep.Received.Packets)
	require.Positive(t, rep.ExpectedPackets)
	require.Zero(t, rep.LostPackets, "no loss on loopback")
	require.Zero(t, rep.LossPercent)
	// Three subscribers of everything sent (less what was sent before they joined).
	require.LessOrEqual(t, rep.Received.Packets, 3*rep.Sent.Packets)
	require.Greater(t, rep.Received.Packets, 2*rep.Sent.Packets)
	require.Positive(t, rep.Latency.Count)
	require.Positive(t, rep.Latency.P50)
	require.LessOrEqual(t, rep.Latency.P50, rep.Latency.P99)
	require.Positive(t, rep.Join.P50)
	require.NotNil(t, rep.Tool, "the tool's own CPU and memory")
	require.NotNil(t, rep.Server, "sampled through --metrics-url")
	require.Equal(t, cfg.MetricsURL, rep.Server.MetricsURL)
	require.Positive(t, rep.Server.CPUPercent)
	require.Positive(t, rep.Server.RSSBytes)
	require.GreaterOrEqual(t, rep.Server.PeakRSS, rep.Server.RSSBytes)
	require.Positive(t, rep.PacketsPerServerCore)
	// Video at 2 Mbit/s is ~7 packets a frame at 30 fps, audio 50/s: ~260 packets/s per viewer.
	require.InDelta(t, 3*260, rep.ReceivedPPS, 3*260*0.2)

	// The node's own counters agree: it forwarded what the subscribers received.
	fwd := node.Forwarding()
	require.GreaterOrEqual(t, fwd.Forwarded, rep.Received.Packets)
}
