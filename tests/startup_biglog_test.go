package tests

import (
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/tests/rtcclient"
)

// TestStartOnBigLog measures start-up on a long log: JETMEDIA_BIGLOG names a data directory
// filled by tests/loggen (optionally with `jetmedia projections snapshot` run on it). The test
// copies it, starts a node on the copy (cold: its projection has never run), publishes with
// WHIP, waits until the node is ready (/readyz's condition), stops it, starts it again on the
// same data (a restart) and publishes again. It logs how long each step took after the start
// began. Only with JETMEDIA_BIGLOG set: a figure for docs/benchmarks.md, not a timed pass/fail
// test.
func TestStartOnBigLog(t *testing.T) {
	src := os.Getenv("JETMEDIA_BIGLOG")
	if src == "" {
		t.Skip("set JETMEDIA_BIGLOG=<data dir written by tests/loggen> to run")
	}
	dir := t.TempDir()
	require.NoError(t, os.CopyFS(dir, os.DirFS(src)))
	api := clientAPI(t)
	for _, run := range []string{"cold", "restart"} {
		cfg := nodeConfig(t, "big")
		cfg.DataDir = dir
		began := time.Now()
		node := startNode(t, cfg)
		httpOpen := time.Since(began)
		room := newRoom("startup")
		ctx := ctxT(t, 60*time.Second)
		pub, err := rtcclient.Publish(ctx, api, node.HTTPURL(), room, asPublisher(t, room))
		require.NoError(t, err, run)
		whip := time.Since(began)
		require.NoError(t, pub.Close(true))
		catch := ctxT(t, 30*time.Minute)
		require.NoError(t, node.CatchUp(catch, func(lag uint64, rate float64) {
			t.Logf("%s: catching up, lag %d, %.0f events/s", run, lag, rate)
		}))
		ready := time.Since(began)
		t.Logf("%s start on %s: HTTP open after %s, WHIP session accepted after %s, ready after %s",
			run, src, httpOpen.Round(time.Millisecond), whip.Round(time.Millisecond), ready.Round(time.Millisecond))
		require.NoError(t, node.Close())
	}
}
