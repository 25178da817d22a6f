// Command jetmedia is the jetmedia media server and its tools: serve, tail, rooms, replay and
// projections. The wiring lives in package app; this file only parses the command line.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

const usage = `jetmedia: a WebRTC media server whose state is an event log.

Usage:
  jetmedia serve [flags]                 run a node (embedded NATS + JetStream, HTTP, WebRTC)
  jetmedia tail [--room R] [--from-start] [--no-follow]
                                         print the event log as JSON lines
  jetmedia rooms [--json]                list live rooms with their peers and tracks
  jetmedia replay --room R [--json]      print a room's timeline and the state folded from it
  jetmedia cluster [--json]              list the nodes (zone, role, load, lease age) and the
                                         replicas and leader of the log and the buckets
  jetmedia cluster forget <edge> [--domain D] [--yes] [--url URL --token T]
                                         end a dead edge's sessions in the region's log and
                                         stop sourcing its log (refused while its lease holds)
  jetmedia cluster unforget <edge> [--domain D]
                                         undo a forget: the edge sources its log again
  jetmedia audit verify [--room R] [--json]
                                         check each room's hash chain: intact, or the first
                                         event that breaks it (exit status 1)
  jetmedia audit who --identity I [--from T] [--to T] [--json] [--url URL --token T]
                                         what an identity did across rooms (audit index)
  jetmedia audit export --room R [--format jsonl|csv]
                                         a room's events from the log
  jetmedia projections rebuild [--bucket B]
                                         fold the whole log into a fresh bucket and compare it
                                         with the live rooms projection
  jetmedia webhooks parked [--json]      list webhook events parked after their last attempt
  jetmedia webhooks redrive [--endpoint URL] --webhook url=…,secret=…
                                         send parked events again; remove the delivered ones
  jetmedia poison list [--model M] [--json]
                                         list events the read models parked (failed to apply)
  jetmedia poison drop (--seq N | --all) remove parked read-model events
  jetmedia poison redrive [--model M]    with the node stopped: rebuild the models that parked
                                         events (the node folds the log again at start)
  jetmedia token --room R --identity I [--grants publish,subscribe,data,admin] [--ttl 1h]
                                         print an access token signed with --auth-key
  jetmedia load --url URL [--publishers P] [--subscribers S] [--ramp D] [--duration D] [--json]
                                         drive a running server with synthetic WHIP publishers
                                         and WHEP subscribers; report loss, latency, server CPU
  jetmedia dev-cluster [--dir D] [--base-port P] [--nodes N]
                                         a local supercluster on loopback: 2 regions of N (3)
                                         routed nodes joined by gateways, one edge each

Every command but serve reads the node's data directory (--data, default ./data) directly
when no server runs on it, or the NATS URL given with --nats (or JETMEDIA_NATS), or the one a
server running on --data announced. Run "jetmedia COMMAND -h" for a command's flags.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if errors.Is(err, errUsage) {
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "jetmedia:", err)
		os.Exit(1)
	}
}

var errUsage = errors.New("usage")

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errUsage
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "serve":
		return serve(ctx, rest, stderr)
	case "tail":
		return tail(ctx, rest, stdout, stderr)
	case "rooms":
		return rooms(ctx, rest, stdout, stderr)
	case "replay":
		return replay(ctx, rest, stdout, stderr)
	case "cluster":
		return clusterCmd(ctx, rest, stdout, stderr)
	case "projections":
		return projectionsCmd(ctx, rest, stdout, stderr)
	case "audit":
		return auditCmd(ctx, rest, stdout, stderr)
	case "token":
		return tokenCmd(ctx, rest, stdout, stderr)
	case "webhooks":
		return webhooksCmd(ctx, rest, stdout, stderr)
	case "poison":
		return poisonCmd(ctx, rest, stdout, stderr)
	case "load":
		return loadCmd(ctx, rest, stdout, stderr)
	case "dev-cluster":
		return devClusterCmd(ctx, rest, stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprintf(stderr, "jetmedia: unknown command %q\n\n%s", cmd, usage)
	return errUsage
}
