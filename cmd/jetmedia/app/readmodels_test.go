package app_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/cmd/jetmedia/app"
	"github.com/jetmedia/jetmedia/projections"
	"github.com/jetmedia/jetmedia/projections/readmodels"
	"github.com/jetmedia/jetmedia/tests/loggen"
)

// readModelState is what a node's read models say about rooms and identities.
func readModelState(t *testing.T, n *app.Node, rooms []string, at time.Time) (map[string]projections.RoomFigures, int) {
	t.Helper()
	db := n.ReadModelsDB()
	figs := map[string]projections.RoomFigures{}
	for _, r := range rooms {
		a, ok, err := projections.LoadAnalytics(db, r)
		require.NoError(t, err)
		require.True(t, ok, r)
		figs[r] = a.Figures(at)
	}
	refs, err := projections.AuditWho(db, projections.AuditQuery{Identity: "system"})
	require.NoError(t, err)
	return figs, len(refs)
}

// TestReadModelsRebuild: deleting <data>/readmodels and restarting rebuilds both models from
// the log (the consumers' ack floors are past the empty checkpoints, so they are rewound),
// equal to what they were; a plain restart counts nothing twice.
func TestReadModelsRebuild(t *testing.T) {
	cfg := app.Defaults()
	cfg.Name = "rebuild"
	cfg.DataDir = t.TempDir()
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.UDPPort = 0
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	rooms := []string{"ra", "rb"}
	at := genStart.Add(48 * time.Hour)

	node, err := app.Start(ctx, cfg)
	require.NoError(t, err)
	for i, r := range rooms {
		require.NoError(t, loggen.Write(ctx, node.JetStream(), 400, loggen.New(r, uint64(i+1), genStart, 20*time.Second).Next))
	}
	require.NoError(t, node.WaitReadModels(ctx))
	want, wantWho := readModelState(t, node, rooms, at)
	require.Positive(t, wantWho)
	require.NoError(t, node.Close())

	for _, wipe := range []bool{false, true} {
		if wipe {
			require.NoError(t, os.RemoveAll(filepath.Join(cfg.DataDir, readmodels.Dir)))
		}
		node, err = app.Start(ctx, cfg)
		require.NoError(t, err)
		require.NoError(t, node.WaitReadModels(ctx))
		got, gotWho := readModelState(t, node, rooms, at)
		require.Equal(t, want, got, "wiped %v", wipe)
		require.Equal(t, wantWho, gotWho, "wiped %v", wipe)
		require.NoError(t, node.Close())
	}
}
