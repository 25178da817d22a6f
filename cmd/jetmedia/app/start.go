package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetmedia/jetmedia/egress/forward"
	"github.com/jetmedia/jetmedia/egress/webhook"
	"github.com/jetmedia/jetmedia/pipeline/eventlog"
	"github.com/jetmedia/jetmedia/pipeline/mediabus"
	"github.com/jetmedia/jetmedia/pipeline/metrics"
	"github.com/jetmedia/jetmedia/pipeline/natsnode"
	"github.com/jetmedia/jetmedia/pipeline/rtc"
	"github.com/jetmedia/jetmedia/pipeline/stagetime"
	"github.com/jetmedia/jetmedia/projections/presence"
	"github.com/jetmedia/jetmedia/projections/readmodels"
)

// The steps of Start, in its order. Each leaves what it started in n, for Close.

func nodeLogger(cfg Config) *slog.Logger {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return log.With("node", cfg.Name)
}

// startNATS starts the embedded NATS server, its connections, the streams and buckets, the
// appender, the media bus and the forwarding hub.
func (n *Node) startNATS(ctx context.Context) (err error) {
	cfg := n.cfg
	storeDir := ""
	if cfg.JetStream {
		if n.unlock, err = LockDataDir(cfg.DataDir); err != nil {
			return err
		}
		storeDir = cfg.DataDir // nats-server keeps its files in <dir>/jetstream
	}
	n.srv, err = natsnode.StartServer(ctx, n.serverConfig(storeDir))
	if err != nil {
		return withFlag(err)
	}
	if u := n.srv.ClientURL(); u != "" && cfg.JetStream {
		if err := recordNATS(cfg.DataDir, u, n.srv); err != nil {
			return err
		}
	}
	if n.ctrl, err = n.srv.Connect(cfg.Name + "-control"); err != nil {
		return err
	}
	if n.media, err = n.srv.Connect(cfg.Name + "-media"); err != nil {
		return err
	}
	if n.rtp, err = n.srv.Connect(cfg.Name+"-rtp", nats.NoEcho()); err != nil {
		return err
	}
	if n.js, err = jetstream.New(n.ctrl); err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	if err = n.declareLog(ctx); err != nil {
		return err
	}
	cfg = n.cfg
	// The server's storage guard: appends fail at once while this node's JetStream cannot
	// write (a full disk), and resume when it recovers.
	opts := []eventlog.AppenderOption{eventlog.WithGate(n.srv)}
	if n.srv.Edge() {
		// The region's log sources this one: rooms this edge creates are its own.
		opts = append(opts, eventlog.WithScope(n.srv.Domain()))
	}
	n.appender = eventlog.NewAppender(n.js, cfg.Name, opts...)
	if n.bus, err = mediabus.NewLocalMediaBus(n.media, n.rtp, n.srv.Interest); err != nil {
		return err
	}
	n.hub = forward.NewHub(n.bus)
	n.hub.Lanes(cfg.FanoutLanes)
	n.timings = new(stagetime.Timings)
	n.hub.Timings(n.timings)

	return nil
}

// serverConfig is the embedded server's configuration. The links between nodes (routes,
// gateways, leaf connections) authenticate with a password derived from the system's signing
// key, which every node of the system must hold: a server without it cannot join.
func (n *Node) serverConfig(storeDir string) natsnode.ServerConfig {
	cfg := n.cfg
	sc := natsnode.ServerConfig{
		Name: cfg.Name, StoreDir: storeDir, Listen: cfg.NATSListen, JetStream: cfg.JetStream,
		ConfigFile: cfg.NATSConfig,
		Cluster:    natsnode.ClusterConfig{Name: cfg.ClusterName, Listen: cfg.ClusterListen, Routes: cfg.Routes},
		Leaf: natsnode.LeafConfig{Listen: cfg.LeafListen, Hub: cfg.Hub, HubDomain: cfg.HubDomain,
			// The edge's own log, buckets and poison/parked streams have the region's names.
			Isolate: []string{eventlog.EventsSubjects, eventlog.PoisonSubjects, webhook.ParkedSubjects, "$KV.>"}},
		Auth:   natsnode.AuthConfig{ReaderPassword: cfg.NATSReaderPassword, LeafPassword: cfg.LeafPassword},
		Logger: n.log,
	}
	if cfg.Edge() {
		sc.Domain = cfg.EdgeDomain()
	}
	if len(cfg.AuthKeys) > 0 {
		sc.Auth.LinkPassword = cfg.AuthKeys[0].Derive("nats-links")
		if sc.Auth.LeafPassword == "" {
			sc.Auth.LeafPassword = sc.Auth.LinkPassword
		}
	}
	return sc
}

// declareLog declares the log and the buckets (in --log-region's cluster, with the replicas
// of an existing log if higher) and opens the rooms and nodes buckets.
func (n *Node) declareLog(ctx context.Context) (err error) {
	if err = n.awaitLogRegion(ctx); err != nil {
		return err
	}
	declareCtx, cancelDeclare := context.WithTimeout(ctx, 30*time.Second)
	defer cancelDeclare()
	n.keepReplicas(declareCtx)
	if err = eventlog.Declare(declareCtx, n.js, n.cfg.Storage); err != nil {
		return err
	}
	// Retried: in a cluster that is still forming, the bucket another node just declared may
	// not be found through this one for a moment.
	if err = eventlog.Retry(declareCtx, func(ctx context.Context) (err error) {
		n.rooms, err = n.js.KeyValue(ctx, eventlog.BucketRooms)
		return err
	}); err != nil {
		return fmt.Errorf("bucket %s: %w", eventlog.BucketRooms, err)
	}
	n.nodes, err = presence.Declare(declareCtx, n.js, n.cfg.Storage)
	return err
}

// awaitLogRegion: a node outside the log's region (--log-region names another cluster, or
// this node is a media-only leaf) does not declare the log: it waits, until ctx ends, for the
// region's nodes to have declared it, so that the log is placed there whatever order the
// regions start in, with the replicas the region's nodes chose (a one-node region declaring
// first had made it R1, and then the three-node region's nodes could not raise it there).
func (n *Node) awaitLogRegion(ctx context.Context) error {
	region := n.cfg.Storage.Region
	if region == "" || region == n.srv.NATS().ClusterName() {
		return nil
	}
	started := time.Now()
	next := started.Add(5 * time.Second)
	var last error
	for {
		attempt, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := n.js.Stream(attempt, eventlog.StreamEvents)
		cancel()
		if err == nil {
			return nil
		}
		last = err
		if now := time.Now(); now.After(next) {
			n.log.Warn("waiting for the log's region to declare the log", "region", region,
				"waited", now.Sub(started).Round(time.Second), "err", err)
			next = now.Add(5 * time.Second)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the log lives in region %q (--log-region), whose nodes have not declared it after %s: start a node of that region (last answer: %w)",
				region, time.Since(started).Round(time.Second), last)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// keepReplicas: with automatic replicas, a node never lowers those of an existing log (a
// media-only leaf of a hub cluster, which counts no routes of its own, would otherwise scale
// the cluster's R3 stream down to 1 when it declares it; so would a one-node region joining a
// supercluster whose log lives in a three-node region). Only a definite answer counts: a node
// whose JetStream is not answering yet (meta group still taking it in) asks again, since
// declaring with its own count on a guess lowered the other region's R3 log to R1, and the
// nodes then fought over the replicas (kill_test.go's TestKillGatewayNode).
func (n *Node) keepReplicas(ctx context.Context) {
	if n.cfg.Replicas != 0 {
		return
	}
	replicas := 0
	err := eventlog.Retry(ctx, func(ctx context.Context) error {
		s, err := n.js.Stream(ctx, eventlog.StreamEvents)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			return nil // none yet: declare with the automatic count
		}
		if err != nil {
			return err
		}
		replicas = s.CachedInfo().Config.Replicas
		return nil
	})
	if err != nil {
		return // JetStream never answered: declaring fails the same way, with its own error
	}
	if replicas > n.cfg.Storage.Replicas {
		n.log.Info("keeping the log's replicas", "replicas", replicas)
		n.cfg.Storage.Replicas = replicas
	}
}

// startReadSide runs the rooms projection and, on a node with JetStream of its own, the
// pebble read models (a leaf keeps none); on an edge, it keeps the region sourcing its log.
func (n *Node) startReadSide(ctx context.Context) (err error) {
	if err = n.startEdgeSource(ctx); err != nil {
		return err
	}
	if err = n.startProjection(ctx); err != nil {
		return err
	}
	if !n.cfg.JetStream {
		return nil
	}
	n.rm, err = readmodels.Start(ctx, readmodels.Config{Conn: n.ctrl, JS: n.js, Node: n.cfg.Name,
		DataDir: n.cfg.DataDir, Storage: n.cfg.Storage, Logger: n.log})
	return err
}

// startCongestion makes viewers' allocations follow their bandwidth estimates
// (egress/forward/congestion.go), unless the edge runs without estimates.
func (n *Node) startCongestion(ctx context.Context) {
	if n.edge.Estimates == nil {
		return
	}
	n.congestion = &forward.Congestion{Estimates: n.edge.Estimates, Log: n.log}
	n.hub.Congest(n.congestion)
	n.wg.Go(func() { n.congestion.Run(ctx) })
}

// startEdge opens the WebRTC port, then sets up what the sessions need besides it: the token
// keyring, the metrics registry and webhook delivery.
func (n *Node) startEdge(ctx context.Context) (err error) {
	cfg := n.cfg
	n.edge, err = rtc.NewEdge(rtc.Config{
		UDPListen: net.JoinHostPort(cfg.UDPHost, strconv.Itoa(cfg.UDPPort)),
		Announce:  cfg.Announce, Senders: cfg.EdgeSenders, NoGSO: !cfg.EdgeGSO, Logger: n.log,
		BWE: rtc.BWEConfig{Off: !cfg.BWE, Estimator: cfg.BWEEstimator, Max: cfg.BWEMaxBitrate,
			Pacing: rtc.PacingConfig{Off: !cfg.Pacing || cfg.BWEEstimator != rtc.EstimatorJetmedia}},
		MaxPublishBitrate: cfg.MaxPublishBitrate,
		FastIngest:        cfg.FastIngest,
		FastEgress:        cfg.FastEgress,
		Timings:           n.timings,
	})
	if err != nil {
		return fmt.Errorf("WebRTC UDP port: %w (change --udp-port or --udp-host)", err)
	}
	n.hub.Batch(n.edge) // a packet's writes to all its viewers leave in one batch
	if err = n.setupAuth(); err != nil {
		return err
	}
	n.metrics = metrics.New(n.metricSources())
	return n.startWebhooks(ctx)
}

// startHTTP listens on the HTTP address and serves mux.
func (n *Node) startHTTP(mux http.Handler) (err error) {
	cfg, log := n.cfg, n.log
	if n.httpLn, err = cfg.HTTP.Listen(cfg.HTTPAddr); err != nil {
		return fmt.Errorf("http listen %s: %w (change --http)", cfg.HTTPAddr, err)
	}
	n.httpURL.Store(n.HTTPURL())
	if n.presence != nil {
		n.presence.Refresh() // the lease names the HTTP port from now on
	}
	hc := cfg.HTTP
	hc.DevOrigins = n.devMode // a page on a local dev server may call a dev-mode node
	hc.PeerOrigins = n.peerOrigins
	n.http = hc.Server(mux, log)
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		if err := n.http.Serve(n.httpLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("http server stopped", "err", err)
		}
	}()
	return nil
}

// withFlag names the serve flag that sets a NATS port that cannot be had.
func withFlag(err error) error {
	var le *natsnode.ListenError
	if !errors.As(err, &le) {
		return err
	}
	flag := map[natsnode.Listener]string{natsnode.ClientListener: "--nats-listen",
		natsnode.ClusterListener: "--cluster-listen", natsnode.LeafListener: "--leaf-listen"}[le.Listener]
	return fmt.Errorf("%w (change %s)", err, flag)
}

// peerOrigins are the HTTP base URLs of the system's other live nodes (their leases): a page
// one of them served may call this node (placement sends /rtc joins and WHIP/WHEP sessions
// between nodes with the page's origin unchanged).
func (n *Node) peerOrigins() []string {
	if n.presence == nil {
		return nil
	}
	var out []string
	for _, l := range n.presence.Leases() {
		if l.HTTP != "" && !l.Expired() {
			out = append(out, l.HTTP)
		}
	}
	return out
}
