package tests

import (
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/tests/loadgen"
)

// TestLoadLiteViewersAgainstNode runs the load engine with its lite WHEP viewers (pion's
// protocol libraries over shared, batched sockets, no PeerConnection) against an in-process
// node: one publisher, five viewers sharing one socket from five loopback addresses. Every
// viewer does ICE and DTLS with the real server and gets video and audio with nothing lost;
// after the run the server has no WHEP session left and the tool no goroutine.
func TestLoadLiteViewersAgainstNode(t *testing.T) {
	node := startLoadNode(t, "load-lite")
	require.Zero(t, toolGoroutines(), "no load goroutines before the run")

	cfg := loadgen.Defaults()
	cfg.URL = node.HTTPURL()
	require.Equal(t, loadgen.ViewerLite, cfg.Viewer, "lite is the default")
	cfg.Subscribers = 5
	cfg.Ramp = 500 * time.Millisecond
	cfg.Duration = 3 * time.Second
	rep, err := loadgen.Run(ctxT(t, 60*time.Second), cfg)
	require.NoError(t, err)
	t.Logf("report: %+v", *rep)

	require.Equal(t, loadgen.ViewerLite, rep.Viewer)
	requireFullReception(t, rep, 5)
	fw := node.Forwarding() // a duplicate is a NACK's resend
	require.GreaterOrEqual(t, fw.Forwarded+fw.Retransmitted, rep.Received.Packets)

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
		if strings.Contains(g, "tests/loadgen.") {
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
