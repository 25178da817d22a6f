package tests

import (
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/cmd/jetmedia/app"
	"github.com/jetmedia/jetmedia/cmd/jetmedia/load"
)

// TestLoadLiteViewersAgainstNode runs the load engine with its lite WHEP viewers (pion's
// protocol libraries over shared, batched sockets, no PeerConnection) against an in-process
// node: one publisher, five viewers sharing one socket from five loopback addresses. Every
// viewer does ICE and DTLS with the real server and gets video and audio with nothing lost;
// after the run the server has no WHEP session left and the tool no goroutine.
func TestLoadLiteViewersAgainstNode(t *testing.T) {
	ncfg := app.Defaults()
	ncfg.Name, ncfg.DataDir, ncfg.HTTPAddr, ncfg.UDPPort, ncfg.Logger = "load-lite", t.TempDir(), "127.0.0.1:0", 0, testLogger(t)
	node := startNode(t, ncfg)
	require.Zero(t, toolGoroutines(), "no load goroutines before the run")

	cfg := load.Defaults()
	cfg.URL = node.HTTPURL()
	require.Equal(t, load.ViewerLite, cfg.Viewer, "lite is the default")
	cfg.Subscribers = 5
	cfg.Ramp = 500 * time.Millisecond
	cfg.Duration = 3 * time.Second
	rep, err := load.Run(ctxT(t, 60*time.Second), cfg)
	require.NoError(t, err)
	t.Logf("report: %+v", *rep)

	require.Equal(t, load.ViewerLite, rep.Viewer)
	require.Equal(t, 5, rep.SubscribersJoined)
	require.Zero(t, rep.SubscribersFailed, rep.FirstError)
	require.Zero(t, rep.SubscribersNoMedia)
	require.Zero(t, rep.SubscribersMissingTracks, "every viewer gets video and audio")
	require.Positive(t, rep.ExpectedPackets)
	require.Zero(t, rep.LostPackets, "no loss on loopback")
	require.LessOrEqual(t, rep.Received.Packets, 5*rep.Sent.Packets)
	require.Greater(t, rep.Received.Packets, 4*rep.Sent.Packets)
	require.Positive(t, rep.Latency.Count)
	require.Positive(t, rep.Latency.P50)
	require.LessOrEqual(t, rep.Latency.P50, rep.Latency.P99)
	require.Equal(t, uint64(5), rep.Join.Count)
	require.Positive(t, rep.Join.P50)
	// ~260 packets/s per viewer (7 video packets a frame at 30 fps, 50 audio).
	require.InDelta(t, 5*260, rep.ReceivedPPS, 5*260*0.2)
	require.GreaterOrEqual(t, node.Forwarding().Forwarded, rep.Received.Packets)

	// The viewers' DELETEs ended their sessions on the server.
	require.Eventually(t, func() bool {
		return value(t, scrape(t, node), "jetmedia_sessions", "transport", "whep") == 0
	}, 5*time.Second, 50*time.Millisecond, "WHEP sessions left on the server")
	// And nothing of the tool runs on: socket readers, DTLS connections over them.
	require.Eventually(t, func() bool { return toolGoroutines() == 0 }, 5*time.Second, 20*time.Millisecond,
		"load goroutines left after Run:\n%s", toolStacks())
}

// toolStacks are the stacks of the goroutines running the load package's code.
func toolStacks() string {
	buf := make([]byte, 1<<22)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for g := range strings.SplitSeq(string(buf), "\n\n") {
		if strings.Contains(g, "cmd/jetmedia/load.") {
			out = append(out, g)
		}
	}
	return strings.Join(out, "\n\n")
}

func toolGoroutines() int {
	s := toolStacks()
	if s == "" {
		return 0
	}
	return strings.Count(s, "\n\n") + 1
}
