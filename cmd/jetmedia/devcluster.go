package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/jetmedia/jetmedia/pipeline/auth"
	"github.com/jetmedia/jetmedia/tests/devcluster"
)

// devClusterCmd runs a local supercluster (tests/devcluster) until interrupted.
func devClusterCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("dev-cluster", flag.ContinueOnError)
	o := devcluster.Defaults()
	fs.StringVar(&o.Dir, "dir", o.Dir, "where the nodes keep their data and config files")
	fs.IntVar(&o.BasePort, "base-port", o.BasePort, "first of the loopback ports the nodes use, ten per node")
	fs.IntVar(&o.NodesPerRegion, "nodes", o.NodesPerRegion, "routed nodes per region (each region has one edge besides)")
	var keys []auth.Key
	addAuthKeyFlags(fs, &keys)
	if err := parse(fs, args, stderr); err != nil {
		return err
	}
	if len(keys) == 0 {
		keys = []auth.Key{auth.GenerateKey("dev")}
	}
	o.AuthKey = keys[0].String()
	nodes, err := devcluster.Plan(o)
	if err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("dev-cluster: this binary's path: %w", err)
	}
	fmt.Fprintf(stdout, "starting %d nodes (data in %s)...\n", len(nodes), o.Dir)
	return devcluster.Run(ctx, self, nodes, stderr, func() {
		fmt.Fprintln(stdout, "\nready:")
		for _, n := range nodes {
			fmt.Fprintf(stdout, "  %-10s %-6s %-6s %s\n", n.Name, n.Region, n.Role, n.HTTP)
		}
		fmt.Fprintf(stdout, "\nthe system's key (for tokens): --auth-key '%s'\nCtrl-C stops every node.\n", o.AuthKey)
	})
}
