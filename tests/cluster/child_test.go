package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/cmd/jetmedia/app"
	"github.com/jetmedia/jetmedia/projections/presence"
)

// killLease is the lease timing of the kill tests' nodes: short, so that a lost node is noticed
// within seconds (the default is 8 s, renewed every 2 s).
var killLease = presence.Timing{Renew: 500 * time.Millisecond, TTL: 3 * time.Second, Recheck: 10 * time.Second}

// childNode is what a node started as a child process is told: the part of app.Config the kill
// tests set (app.Config holds a logger and functions, which do not cross a process boundary).
type childNode struct {
	Name, DataDir, HTTPAddr                string
	NATSListen, ClusterListen, ClusterName string
	Routes                                 []string
	Hub, LeafListen, NATSConfig, Zone      string
	JetStream                              bool
	Replicas                               int
	Placement                              bool
	LeaseRenew, LeaseTTL, LeaseRecheck     time.Duration
}

// childOf describes cfg to a child process.
func childOf(cfg app.Config) childNode {
	return childNode{Name: cfg.Name, DataDir: cfg.DataDir, HTTPAddr: cfg.HTTPAddr,
		NATSListen: cfg.NATSListen, ClusterListen: cfg.ClusterListen, ClusterName: cfg.ClusterName,
		Routes: cfg.Routes, Hub: cfg.Hub, LeafListen: cfg.LeafListen, NATSConfig: cfg.NATSConfig, Zone: cfg.Zone,
		JetStream: cfg.JetStream, Replicas: cfg.Replicas, Placement: cfg.Placement,
		LeaseRenew: cfg.Presence.Renew, LeaseTTL: cfg.Presence.TTL, LeaseRecheck: cfg.Presence.Recheck}
}

func (c childNode) config(t testing.TB) app.Config {
	cfg := nodeConfig(t, c.Name)
	cfg.DataDir, cfg.HTTPAddr = c.DataDir, c.HTTPAddr
	cfg.NATSListen, cfg.ClusterListen, cfg.ClusterName, cfg.Routes = c.NATSListen, c.ClusterListen, c.ClusterName, c.Routes
	cfg.Hub, cfg.LeafListen, cfg.NATSConfig, cfg.Zone = c.Hub, c.LeafListen, c.NATSConfig, c.Zone
	cfg.JetStream, cfg.Replicas, cfg.Placement = c.JetStream, c.Replicas, c.Placement
	cfg.Presence = presence.Timing{Renew: c.LeaseRenew, TTL: c.LeaseTTL, Recheck: c.LeaseRecheck}
	return cfg
}

// TestHelperNode is not a test: the kill tests run the test binary with it as a node process,
// to kill it with SIGKILL.
func TestHelperNode(t *testing.T) {
	spec := os.Getenv("JETMEDIA_CLUSTER_CHILD")
	if spec == "" {
		t.Skip("helper process for the kill tests")
	}
	var c childNode
	require.NoError(t, json.Unmarshal([]byte(spec), &c))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	start, cancel := context.WithTimeout(ctx, 90*time.Second)
	n, err := app.Start(start, c.config(t))
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper node:", err)
		os.Exit(1)
	}
	<-ctx.Done()
	_ = n.Close()
	os.Exit(0)
}

// child is a node running in a child process of the test.
type child struct {
	name, url string
	cmd       *exec.Cmd
	once      sync.Once
}

// startChild starts cfg's node as a child process (cfg.HTTPAddr must name a port) and stops it
// with SIGKILL at the end of the test if it is still running.
func startChild(t *testing.T, cfg app.Config) *child {
	t.Helper()
	spec, err := json.Marshal(childOf(cfg))
	require.NoError(t, err)
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperNode$")
	// The child is killed with SIGKILL, so its own t.TempDir is never removed: it makes
	// it under the parent's, which the parent removes.
	cmd.Env = append(os.Environ(), "JETMEDIA_CLUSTER_CHILD="+string(spec), "TMPDIR="+t.TempDir())
	cmd.Stderr = os.Stderr
	require.NoError(t, cmd.Start())
	c := &child{name: cfg.Name, url: "http://" + cfg.HTTPAddr, cmd: cmd}
	t.Cleanup(c.kill)
	return c
}

// kill sends SIGKILL and waits for the process.
func (c *child) kill() {
	c.once.Do(func() {
		_ = c.cmd.Process.Signal(syscall.SIGKILL)
		_ = c.cmd.Wait()
	})
}

// waitUp waits until the child's HTTP port answers (it opens once the node has started).
func (c *child) waitUp(t *testing.T) {
	t.Helper()
	require.Eventually(t, func() bool {
		resp, err := http.Get(c.url + "/v1/rooms")
		if err != nil {
			return false
		}
		_ = resp.Body.Close()
		return true
	}, 90*time.Second, 50*time.Millisecond, "node %s up at %s", c.name, c.url)
}
