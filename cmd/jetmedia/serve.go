package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/jetmedia/jetmedia/cmd/jetmedia/app"
)

// envPrefix: every flag of serve can also be set as JETMEDIA_<FLAG> (dashes as underscores);
// flags win over the environment, which wins over the defaults.
const envPrefix = "JETMEDIA_"

type listFlag struct{ vals *[]string }

func (l listFlag) String() string {
	if l.vals == nil {
		return ""
	}
	return strings.Join(*l.vals, ",")
}

func (l listFlag) Set(s string) error {
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			*l.vals = append(*l.vals, v)
		}
	}
	return nil
}

// applyEnv sets every flag that has a JETMEDIA_ variable, before the command line is parsed.
func applyEnv(fs *flag.FlagSet) error {
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		name := envPrefix + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v, ok := os.LookupEnv(name); ok {
			if err := fs.Set(f.Name, v); err != nil {
				errs = append(errs, fmt.Errorf("%s=%q: %w", name, v, err))
			}
		}
	})
	return errors.Join(errs...)
}

func newLogger(w io.Writer, level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("log level %q: use debug, info, warn or error", level)
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l})), nil
}

func serveFlags(cfg *app.Config, logLevel *string) *flag.FlagSet {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.StringVar(&cfg.Name, "name", cfg.Name, "node name, unique in a system of nodes")
	fs.StringVar(&cfg.DataDir, "data", cfg.DataDir, "data directory (JetStream files)")
	fs.StringVar(&cfg.HTTPAddr, "http", cfg.HTTPAddr, "HTTP listen address: API, WHIP, WHEP, demo page")
	fs.StringVar(&cfg.RTMPAddr, "rtmp-listen", cfg.RTMPAddr, "host:port to accept RTMP publishers on, rtmp://HOST:PORT/live/<room> (default: none; 127.0.0.1:1935 for OBS on this machine)")
	fs.StringVar(&cfg.SIP.Listen, "sip-listen", cfg.SIP.Listen, "host:port (UDP and TCP) to accept SIP calls on, sip:<room>@HOST (default: none)")
	fs.StringVar(&cfg.SIP.Domain, "sip-domain", cfg.SIP.Domain, "SIP domain callers dial (sip:<room>@DOMAIN) and digest realm (default: any host, realm jetmedia)")
	fs.Var(listFlag{&cfg.SIP.Users}, "sip-users", "SIP accounts allowed to call in: user:password or user:password@room (comma-separated)")
	fs.IntVar(&cfg.SIP.Speakers, "sip-speakers", cfg.SIP.Speakers, "how many of a room's loudest speakers a SIP caller hears at once (0: 3)")
	fs.BoolVar(&cfg.RTMPAudio.Disabled, "rtmp-audio-off", cfg.RTMPAudio.Disabled, "publish RTMP video only: no ffmpeg child process turning AAC into Opus")
	fs.StringVar(&cfg.UDPHost, "udp-host", cfg.UDPHost, "IP the WebRTC ICE UDP port binds; 0.0.0.0: every interface, their addresses offered as ICE candidates; 127.0.0.1: this machine only (not for GStreamer/libnice)")
	fs.IntVar(&cfg.UDPPort, "udp-port", cfg.UDPPort, "the one UDP port all WebRTC sessions share (0: any free port)")
	fs.Var(listFlag{&cfg.Announce}, "announce", "IPs to announce in ICE candidates instead of the bound one (comma-separated)")
	fs.StringVar(&cfg.NATSListen, "nats-listen", cfg.NATSListen, "host:port to accept NATS clients on (default: none, in-process only)")
	fs.StringVar(&cfg.NATSReaderPassword, "nats-reader-password", cfg.NATSReaderPassword,
		"password NATS clients give as user \"reader\" (read-only); empty: clients without credentials are readers")
	fs.StringVar(&cfg.LeafPassword, "leaf-password", cfg.LeafPassword, "password of leaf nodes (user jetmedia-leaf), on the hub and on its leaves")
	fs.StringVar(&cfg.LeafListen, "leaf-listen", cfg.LeafListen, "host:port on which to accept leaf nodes (this node becomes a hub)")
	fs.StringVar(&cfg.Hub, "hub", cfg.Hub, "hub to join as a leaf node: nats-leaf://host:port")
	fs.StringVar(&cfg.NATSConfig, "nats-config", cfg.NATSConfig, "nats-server configuration file (its own format: gateways, leafnodes, accounts, TLS) merged under these flags; docs/cluster.md")
	fs.StringVar(&cfg.JSDomain, "js-domain", cfg.JSDomain, "JetStream domain of an edge (--hub with JetStream on) (default edge-<name>)")
	fs.StringVar(&cfg.HubDomain, "hub-domain", cfg.HubDomain, "JetStream domain of the region: the domain its nodes run and edges and media-only leaves reach (default jetmedia)")
	fs.StringVar(&cfg.ClusterListen, "cluster-listen", cfg.ClusterListen, "host:port of this node's NATS route port (cluster of nodes in one region)")
	fs.Var(listFlag{&cfg.Routes}, "routes", "route URLs of the cluster's nodes, nats://host:port (comma-separated; may include this node)")
	fs.StringVar(&cfg.ClusterName, "cluster-name", cfg.ClusterName, "cluster name (default jetmedia)")
	fs.StringVar(&cfg.LogRegion, "log-region", cfg.LogRegion, "the cluster (region) that holds the log and buckets in a supercluster; give every node the same (default: the cluster of the node that declares them first)")
	fs.IntVar(&cfg.Replicas, "replicas", cfg.Replicas, "replicas of the event log and buckets in the cluster (0: 3 with 3 or more routed nodes, else 1; at most the cluster's size)")
	fs.DurationVar(&cfg.EdgeLostAfter, "edge-lost-after", cfg.EdgeLostAfter, "on a region node: forget an edge whose log the region has not heard from for this long, ending its sessions in the log, as jetmedia cluster forget does; an edge cut off that long is forgotten too (0: never, an operator decides)")
	fs.IntVar(&cfg.MaxSessions, "max-sessions", cfg.MaxSessions, "new WHIP/WHEP/room sessions beyond this many on this node go to another node or are refused (503, room error full) (0: no limit)")
	fs.BoolVar(&cfg.Placement, "placement", cfg.Placement, "send new WHIP/WHEP sessions (307) and room joins (redirect message) to the node that should serve them (same zone, then least loaded); false: serve here")
	fs.StringVar(&cfg.Zone, "zone", cfg.Zone, "zone this node runs in (data centre, region, rack), announced in its lease")
	fs.Func("lease-ttl", "how long the node's lease holds without renewal; renewed every quarter of it (default 8s)", func(s string) error {
		d, err := time.ParseDuration(s)
		if err != nil {
			return err
		}
		cfg.Presence.TTL, cfg.Presence.Renew = d, d/4
		return nil
	})
	fs.BoolVar(&cfg.JetStream, "jetstream", cfg.JetStream, "run JetStream here; false makes a media-only node that uses its hub's or cluster's JetStream")
	fs.DurationVar(&cfg.Storage.MaxAge, "retention-max-age", cfg.Storage.MaxAge, "drop events older than this (0: keep forever)")
	fs.Int64Var(&cfg.Storage.MaxBytes, "retention-max-bytes", cfg.Storage.MaxBytes, "cap the event log's size in bytes (0: unlimited)")
	fs.DurationVar(&cfg.ConnectTimeout, "connect-timeout", cfg.ConnectTimeout, "end WebRTC sessions that do not connect within this")
	fs.DurationVar(&cfg.DisconnectGrace, "disconnect-grace", cfg.DisconnectGrace, "how long a disconnected WebRTC session may recover")
	fs.IntVar(&cfg.FanoutLanes, "fanout-lanes", cfg.FanoutLanes, "goroutines that may write one track's packets to its viewers, one per 24 viewers (default: the cores Go uses)")
	fs.IntVar(&cfg.MaxAudioStreams, "max-audio-streams", cfg.MaxAudioStreams, "audio tracks of a room this node forwards to its viewers: the loudest speakers, then those who spoke last (0: every one)")
	fs.IntVar(&cfg.SnapshotsKeep, "snapshots-keep", cfg.SnapshotsKeep, "snapshots of each room kept in the snapshots bucket; older ones are deleted when a new one is written (never the newest valid one)")
	fs.IntVar(&cfg.EdgeSenders, "edge-senders", cfg.EdgeSenders, "goroutines that send the WebRTC port's batched packets, each to its share of the viewers (default: the cores Go uses)")
	fs.BoolVar(&cfg.EdgeGSO, "edge-gso", cfg.EdgeGSO, "send a viewer's queued packets as one message the kernel segments (UDP GSO, where the kernel has it)")
	fs.BoolVar(&cfg.BWE, "bwe", cfg.BWE, "estimate each viewer's bandwidth from its transport-wide feedback and pause the video it cannot carry")
	fs.StringVar(&cfg.BWEEstimator, "bwe-estimator", cfg.BWEEstimator, "the bandwidth estimator of --bwe: jetmedia (the node's own, cheap) or gcc (pion's, for comparison)")
	fs.BoolVar(&cfg.Pacing, "pacing", cfg.Pacing, "pace what each viewer is sent at 2.5 times its bandwidth estimate, queueing bursts (key frames, cache replays, retransmissions); needs --bwe with the jetmedia estimator")
	fs.IntVar(&cfg.MaxPublishBitrate, "max-publish-bitrate", cfg.MaxPublishBitrate, "cap each publisher's send rate in bit/s with REMB (0: no cap)")
	fs.BoolVar(&cfg.FastIngest, "fast-ingest", cfg.FastIngest, "the WebRTC port's reader decrypts publishers' RTP (WHIP, room SDK) itself, one goroutine hand-off instead of pion's four (experimental)")
	fs.BoolVar(&cfg.FastEgress, "fast-egress", cfg.FastEgress, "the node protects and sends WHEP viewers' and room subscribers' RTP itself with each session's SRTP keys, past pion's SRTP session and ICE connection (experimental)")
	fs.DurationVar(&cfg.ResumeGrace, "resume-grace", cfg.ResumeGrace, "how long a room SDK session waits for its client to resume after the WebSocket drops (0: leave at once)")
	fs.StringVar(logLevel, "log-level", *logLevel, "debug, info, warn or error")
	addHTTPFlags(fs, &cfg.HTTP)
	addAuthKeyFlags(fs, &cfg.AuthKeys)
	addWebhookFlags(fs, &cfg.Webhooks)
	return fs
}

func serve(ctx context.Context, args []string, stderr io.Writer) error {
	cfg := app.Defaults()
	logLevel := "info"
	fs := serveFlags(&cfg, &logLevel)
	fs.SetOutput(stderr)
	pprofAddr := fs.String("pprof", "", "host:port to serve Go's profiler (net/http/pprof) on; off by default")
	if err := applyEnv(fs); err != nil {
		return err
	}
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("serve takes no arguments, got %q", fs.Args())
	}
	log, err := newLogger(stderr, logLevel)
	if err != nil {
		return err
	}
	cfg.Logger = log
	raiseProcs(cfg.EdgeSenders, runtime.NumCPU(), log)
	if *pprofAddr != "" {
		stopPprof, err := startPprof(*pprofAddr, log)
		if err != nil {
			return err
		}
		defer stopPprof()
	}
	startCtx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	node, err := app.Start(startCtx, cfg)
	if err != nil {
		return err
	}
	if err := node.CatchUp(ctx, func(lag uint64, perSecond float64) {
		log.Info("catching up: the rooms projection is behind the log", "events", lag, "events_per_s", int(perSecond))
	}); err != nil {
		return errors.Join(err, node.Close())
	}
	log.Info("ready: open "+node.HTTPURL()+"/ in a browser", "whip", node.HTTPURL()+"/whip/{room}", "whep", node.HTTPURL()+"/whep/{room}")
	<-ctx.Done()
	log.Info("shutting down")
	return node.Close()
}

// raiseProcs gives the Go scheduler one more processor (P) per edge sender, unless GOMAXPROCS
// is set. The senders spend their time in sendmmsg: CPU work in the kernel (on loopback the
// receiver's side too) during which their P sits in a system call and runs no Go code. With
// one P per core, the fan-out lanes and pion's goroutines readied meanwhile wait for the
// runtime's sysmon to take such a P back (20 µs and more, in every burst); with a P per
// sender beside one per core they start at once and the kernel shares the cores. At 100
// viewers on two cores this took 0.2-0.7 ms off the latency p99 in every interleaved set
// (docs/benchmarks.md).
//
// Not when the runtime's default is below cpus, the CPUs this process may run on: that is a
// container's CPU quota (Go sizes GOMAXPROCS to it), and more threads than the quota would
// spend it faster in a burst and be throttled for the rest of the period.
func raiseProcs(senders, cpus int, log *slog.Logger) {
	if os.Getenv("GOMAXPROCS") != "" || senders < 1 || defaultProcs < cpus {
		return
	}
	procs := defaultProcs + senders
	if procs <= runtime.GOMAXPROCS(0) {
		return
	}
	runtime.GOMAXPROCS(procs)
	log.Debug("Go processors: one per core and one per edge sender", "gomaxprocs", procs)
}

// defaultProcs is the runtime's own GOMAXPROCS, before raiseProcs.
var defaultProcs = runtime.GOMAXPROCS(0)
