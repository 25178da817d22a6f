package main

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/projections/logtools"
	"github.com/jetmedia/jetmedia/projections/presence"
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
		return len(v.Nodes) == 1 && v.Nodes[0].HTTP != "" && len(v.Projectors) == 1
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
	require.Equal(t, []string{"EVENTS", "KV_rooms", "KV_snapshots", "KV_nodes", "KV_projectors"}, names)
	require.Len(t, v.Projectors, 1, "the rooms projection's writer")
	require.Equal(t, "rooms", v.Projectors[0].Projection)
	require.Equal(t, "lister", v.Projectors[0].Node, "alone, it writes the rooms bucket")

	text, err := runCLI(t, "cluster", "--nats", natsURL)
	require.NoError(t, err)
	require.Contains(t, text, "lister")
	require.Contains(t, text, "eu-west-1a")
	require.Contains(t, text, "EVENTS")
}

// TestClusterForgetCommand: `cluster forget` needs an edge's name, and refuses (through NATS
// and through a node's HTTP API) a node that is no edge of the region and a bad name;
// `cluster unforget` of an edge never forgotten says there is nothing to do. The forgetting
// itself is tests/cluster's TestForgetDeadEdge.
func TestClusterForgetCommand(t *testing.T) {
	cfg := cliNodeConfig(t, "region")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	node := startCLINode(t, ctx, cfg)

	_, err := runCLI(t, "cluster", "forget", "--yes", "--data", cfg.DataDir)
	require.ErrorContains(t, err, "name one edge")
	_, err = runCLI(t, "cluster", "forget", "nosuch", "--yes", "--data", cfg.DataDir)
	require.ErrorIs(t, err, presence.ErrNotEdge)
	_, err = runCLI(t, "cluster", "forget", "--yes", "--url", node.HTTPURL(), "nosuch")
	require.ErrorContains(t, err, "404")
	_, err = runCLI(t, "cluster", "forget", "bad.name", "--yes", "--url", node.HTTPURL())
	require.ErrorContains(t, err, "400")
	out, err := runCLI(t, "cluster", "unforget", "nosuch", "--data", cfg.DataDir)
	require.NoError(t, err)
	require.Contains(t, out, "nothing to do")
}
