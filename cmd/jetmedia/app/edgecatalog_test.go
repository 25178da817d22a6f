package app_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/cmd/jetmedia/app"
	"github.com/jetmedia/jetmedia/egress/whep"
	"github.com/jetmedia/jetmedia/pipeline/auth"
	"github.com/jetmedia/jetmedia/tests/rtcclient"
	"github.com/jetmedia/jetmedia/tests/testlog"
)

// TestEdgeViewerOfRegionRoom: a WHEP viewer on an edge plays a room published on the edge's
// hub (the region), which the edge's own rooms bucket never holds: the edge's catalog finds
// the publisher in the region's bucket over its link (before, the viewer was told to retry
// for good). The edge's recheck of its viewers' tracks asks the region too: the viewer keeps
// playing past two rechecks. Once the publisher has left, the viewer ends within
// edgeEndBound, told by the edge's watch of the region's bucket over the link, not found by
// the recheck (every whep.RecheckEvery, which was how an edge heard of it before).
func TestEdgeViewerOfRegionRoom(t *testing.T) {
	key := auth.GenerateKey("edge-test")
	config := func(name string) app.Config {
		cfg := app.Defaults()
		cfg.Name, cfg.DataDir, cfg.HTTPAddr = name, t.TempDir(), "127.0.0.1:0"
		cfg.UDPHost, cfg.UDPPort = "127.0.0.1", 0
		cfg.AuthKeys, cfg.Placement = []auth.Key{key}, false
		return cfg
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	hubCfg := config("hub")
	hubCfg.LeafListen = "127.0.0.1:0"
	hub, err := app.Start(ctx, hubCfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = hub.Close() })
	edgeCfg := config("edge")
	edgeCfg.Hub = hub.Server().LeafURL()
	logs := &testlog.Capture{Min: slog.LevelDebug}
	edgeCfg.Logger = slog.New(logs)
	edge, err := app.Start(ctx, edgeCfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = edge.Close() })
	require.Equal(t, "edge-edge", edge.Server().Domain())

	keys, err := auth.NewKeyring(key)
	require.NoError(t, err)
	token := func(identity string, grant auth.Grant) rtcclient.Option {
		tok, err := keys.Sign(auth.NewClaims("regional", identity, []auth.Grant{grant}, time.Now(), time.Hour))
		require.NoError(t, err)
		return rtcclient.WithToken(tok)
	}
	api, err := rtcclient.NewAPI()
	require.NoError(t, err)
	pub, err := rtcclient.Publish(ctx, api, hub.HTTPURL(), "regional", token("publisher", auth.Publish))
	require.NoError(t, err)
	defer pub.Close(true)
	playCtx, cancelPlay := context.WithTimeout(ctx, 30*time.Second)
	defer cancelPlay()
	v, err := rtcclient.Play(playCtx, api, edge.HTTPURL(), "regional", token("viewer", auth.Subscribe))
	require.NoError(t, err, "the edge's viewer finds the region's publisher")
	defer v.Close()
	require.Eventually(t, func() bool { return v.Video.Load() > 30 && v.Audio.Load() > 30 },
		15*time.Second, 20*time.Millisecond, "the edge's viewer plays the region's publisher")

	// The edge's own bucket does not hold the tracks: its recheck must not end the viewer.
	time.Sleep(2*whep.RecheckEvery + time.Second)
	v0 := v.Video.Load()
	require.Eventually(t, func() bool { return v.Video.Load() > v0+30 }, 10*time.Second, 20*time.Millisecond,
		"the viewer still plays after two rechecks")
	require.Positive(t, edge.ForwardedTracks())

	left := time.Now()
	require.NoError(t, pub.Close(true))
	require.Eventually(t, func() bool { return edge.ForwardedTracks() == 0 }, 2*whep.RecheckEvery+10*time.Second,
		10*time.Millisecond, "the viewer ends once the region's publisher left")
	took := time.Since(left)
	t.Logf("the region's publisher left -> the edge's viewer ended: %s", took.Round(time.Millisecond))
	require.Empty(t, logs.Matching("found by the recheck"), "the edge's watch of the region's bucket tells the end, not the recheck")
	bound := edgeEndBound
	if raceDetector {
		bound = edgeEndBoundRace
	}
	require.Less(t, took, bound, "the edge's viewer hears of the end promptly")
}

// edgeEndBound bounds how long an edge's viewer of a region's publisher takes to end once the
// publisher left (its session's end in the region's log, folded into the region's bucket, told
// over the link): well under whep.RecheckEvery. The race detector slows every step.
const (
	edgeEndBound     = 2 * time.Second
	edgeEndBoundRace = 3 * time.Second
)
