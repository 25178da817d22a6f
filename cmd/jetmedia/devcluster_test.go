package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/cmd/jetmedia/app"
	"github.com/jetmedia/jetmedia/pipeline/auth"
	"github.com/jetmedia/jetmedia/pipeline/natsnode"
	"github.com/jetmedia/jetmedia/tests/devcluster"
)

// TestDevClusterPlan: every node dev-cluster plans is a valid `serve` command line, its
// config file a valid nats-server config, and no two nodes share a port or name.
func TestDevClusterPlan(t *testing.T) {
	o := devcluster.Defaults()
	o.Dir = t.TempDir()
	o.AuthKey = auth.GenerateKey("dev").String()
	nodes, err := devcluster.Plan(o)
	require.NoError(t, err)
	require.Len(t, nodes, 8, "2 regions x (3 nodes + 1 edge)")
	names, https := map[string]bool{}, map[string]bool{}
	for _, n := range nodes {
		require.False(t, names[n.Name], n.Name)
		require.False(t, https[n.HTTP], n.HTTP)
		names[n.Name], https[n.HTTP] = true, true
		require.Equal(t, "serve", n.Args[0])
		if n.Config != "" {
			require.NoError(t, os.MkdirAll(filepath.Dir(n.ConfigPath), 0o755))
			require.NoError(t, os.WriteFile(n.ConfigPath, []byte(n.Config), 0o600))
			_, err := natsnode.ReadConfigFile(n.ConfigPath)
			require.NoError(t, err, n.Name)
		}
		cfg := app.Defaults()
		level := "info"
		fs := serveFlags(&cfg, &level)
		require.NoError(t, fs.Parse(n.Args[1:]), n.Name)
		require.NoError(t, cfg.Validate(), n.Name)
		require.Equal(t, n.Role == devcluster.RoleEdge, cfg.Edge(), n.Name)
	}
	_, err = devcluster.Plan(devcluster.Options{Regions: []string{"a"}, NodesPerRegion: 1, BasePort: 65530, AuthKey: "k"})
	require.Error(t, err, "ports beyond 65535")
	_, err = devcluster.Plan(devcluster.Options{Regions: []string{"a"}, NodesPerRegion: 1, BasePort: 20000})
	require.Error(t, err, "no key")
}
