package main

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/projections/logtools"
)

// TestClusterCommand lists a running node's lease (zone, role, addresses, a fresh lease) and
// the replication of the log and the buckets, in text and JSON.
func TestClusterCommand(t *testing.T) {
	cfg := cliNodeConfig(t, "lister")
	cfg.Zone = "eu-west-1a"
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	node := startCLINode(t, ctx, cfg)
	natsURL := node.Server().ClientURL()

	var v logtools.ClusterView
	require.Eventually(t, func() bool { // the lease names the HTTP port once it is open
		out, err := runCLI(t, "cluster", "--nats", natsURL, "--json")
		require.NoError(t, err)
		require.NoError(t, json.Unmarshal([]byte(out), &v), out)
		return len(v.Nodes) == 1 && v.Nodes[0].HTTP != ""
	}, 5*time.Second, 20*time.Millisecond)
	require.Len(t, v.Nodes, 1)
	n := v.Nodes[0]
	require.Equal(t, "lister", n.Name)
	require.Equal(t, "eu-west-1a", n.Zone)
	require.Equal(t, "full", n.Role)
	require.Equal(t, node.HTTPURL(), n.HTTP)
	require.Equal(t, node.UDPAddr().String(), n.UDP)
	require.False(t, n.Lost)
	require.Less(t, n.LeaseAge, cfg.Presence.TTL)
	var names []string
	for _, s := range v.Streams {
		names = append(names, s.Name)
		require.Equal(t, 1, s.Replicas, "alone: R1")
	}
	require.Equal(t, []string{"EVENTS", "KV_rooms", "KV_snapshots", "KV_nodes"}, names)

	text, err := runCLI(t, "cluster", "--nats", natsURL)
	require.NoError(t, err)
	require.Contains(t, text, "lister")
	require.Contains(t, text, "eu-west-1a")
	require.Contains(t, text, "EVENTS")
}
