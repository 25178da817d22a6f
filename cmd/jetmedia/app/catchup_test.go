package app_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/cmd/jetmedia/app"
	"github.com/jetmedia/jetmedia/projections"
	"github.com/jetmedia/jetmedia/tests/loggen"
)

// TestCatchUp: with a log written faster than the rooms projection folds it, CatchUp returns
// only once the projection is within projections.ReadyLag of the log (what /readyz and the
// "ready" line wait for), and every progress report it made was of a lag above that.
func TestCatchUp(t *testing.T) {
	cfg := app.Defaults()
	cfg.Name = "catchup"
	cfg.DataDir = t.TempDir()
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.UDPPort = 0
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	node, err := app.Start(ctx, cfg)
	require.NoError(t, err)
	defer func() { require.NoError(t, node.Close()) }()
	for i := range 4 {
		require.NoError(t, loggen.Write(ctx, node.JetStream(), 4000, loggen.New(fmt.Sprint("big", i), uint64(i+1), genStart, time.Second).Next))
	}
	lagAfterWrite, err := node.ProjectionLag(ctx)
	require.NoError(t, err)
	var reports []uint64
	require.NoError(t, node.CatchUp(ctx, func(lag uint64, _ float64) { reports = append(reports, lag) }))
	lag, err := node.ProjectionLag(ctx)
	require.NoError(t, err)
	t.Logf("lag after writing 16000 events: %d; progress reports: %v; lag when caught up: %d", lagAfterWrite, reports, lag)
	require.LessOrEqual(t, lag, uint64(projections.ReadyLag))
	for _, r := range reports {
		require.Greater(t, r, uint64(projections.ReadyLag), "a progress report while within ReadyLag")
	}
}
