package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetmedia/jetmedia/egress/forward"
	"github.com/jetmedia/jetmedia/egress/webhook"
	"github.com/jetmedia/jetmedia/egress/whep"
	"github.com/jetmedia/jetmedia/ingress/rtmp"
	"github.com/jetmedia/jetmedia/ingress/signal"
	"github.com/jetmedia/jetmedia/ingress/sip"
	"github.com/jetmedia/jetmedia/ingress/whip"
	"github.com/jetmedia/jetmedia/pipeline/auth"
	"github.com/jetmedia/jetmedia/pipeline/eventlog"
	"github.com/jetmedia/jetmedia/pipeline/mediabus"
	"github.com/jetmedia/jetmedia/pipeline/metrics"
	"github.com/jetmedia/jetmedia/pipeline/natsnode"
	"github.com/jetmedia/jetmedia/pipeline/rtc"
	"github.com/jetmedia/jetmedia/pipeline/stagetime"
	"github.com/jetmedia/jetmedia/projections"
	"github.com/jetmedia/jetmedia/projections/presence"
	"github.com/jetmedia/jetmedia/projections/projector"
	"github.com/jetmedia/jetmedia/projections/readmodels"
)

// Node is a running jetmedia server.
type Node struct {
	cfg Config
	log *slog.Logger

	srv      *natsnode.Server
	ctrl     *nats.Conn // control plane: JetStream API, appends, KV
	media    *nats.Conn // media plane: feedback
	rtp      *nats.Conn // media plane: RTP, without echo (the bus hands the node's own to its viewers)
	js       jetstream.JetStream
	region   jetstream.JetStream // on an edge: the region's JetStream, over the link (its domain)
	rooms    jetstream.KeyValue
	nodes    jetstream.KeyValue // leases (projections/presence)
	presence *presence.Presence
	// selfEnd ends the sessions the log ended while this node served them (presence.SelfEnd).
	selfEnd  *presence.SelfEnd
	started  time.Time
	httpURL  atomic.Value // string: the HTTP base URL once the port is open, for the lease
	appender *eventlog.Appender
	bus      *mediabus.MediaBus
	edge     *rtc.Edge
	hub      *forward.Hub
	timings  *stagetime.Timings // the forward path's stages, read by /metrics
	sessions *rtc.Registry      // every WebRTC session: WHIP, WHEP and room SDK
	keys     *auth.Keyring      // verifies tokens; see auth.go
	devMode  bool
	whip     *whip.Handler
	rtmp     *rtmp.Server // nil unless Config.RTMPAddr is set
	sip      *sip.Server  // nil unless Config.SIP.Listen is set
	metrics  *metrics.Registry
	// stopProjection ends the rooms projection's election and, on the node writing it, the
	// projection and its snapshotter (n.wg waits for them).
	stopProjection context.CancelFunc
	projector      *projector.Elector         // the rooms projection's lease
	snaps          *projections.SnapshotStore // room snapshots; nil when the bucket cannot be reached
	webhooks       *webhook.Deliverer
	rm             *readmodels.Runner // pebble read models (audit index, analytics); nil without JetStream
	http           *http.Server
	httpLn         net.Listener

	// congestion pauses the video a viewer's bandwidth cannot carry; nil with --bwe=false.
	congestion *forward.Congestion

	unlock    func()
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
}

// prepare reads the routes of the --nats-config file (the cluster's size counts them),
// validates the config and sets the replicas it implies.
func prepare(cfg Config) (Config, error) {
	var err error
	if cfg.fileRoutes, err = natsnode.ConfigFileRoutes(cfg.NATSConfig); err != nil {
		return cfg, fmt.Errorf("config: %w (--nats-config)", err)
	}
	if err := cfg.Validate(); err != nil {
		return cfg, fmt.Errorf("config: %w", err)
	}
	cfg.Storage.Replicas = cfg.EffectiveReplicas()
	if !cfg.Edge() {
		cfg.Storage.Region = cfg.LogRegion // an edge's log lives in its own domain
	}
	return cfg, nil
}

// Start brings a node up: NATS, streams and buckets, the projection, WebRTC, HTTP. On error
// everything started so far is stopped again.
func Start(ctx context.Context, cfg Config) (_ *Node, err error) {
	if cfg, err = prepare(cfg); err != nil {
		return nil, err
	}
	log := nodeLogger(cfg)
	n := &Node{cfg: cfg, log: log, started: time.Now().UTC()}
	defer func() {
		if err != nil {
			_ = n.Close()
		}
	}()
	runCtx, cancel := context.WithCancel(context.Background())
	n.cancel = cancel

	if err = n.startNATS(ctx); err != nil {
		return nil, err
	}
	if err = n.startReadSide(runCtx); err != nil {
		return nil, err
	}
	if err = n.startEdge(ctx); err != nil {
		return nil, err
	}
	n.startCongestion(runCtx)
	timeouts := rtc.Timeouts{Connect: cfg.ConnectTimeout, DisconnectGrace: cfg.DisconnectGrace}
	if n.sessions, err = rtc.NewRegistry(rtc.RegistryConfig{Appender: n.metrics.Appender(n.appender), Node: cfg.Name, Logger: log}); err != nil {
		return nil, err
	}
	webrtcHTTP := rtc.HTTPConfig{API: n.edge.API, Sessions: n.sessions, Auth: n.keys, Timeouts: timeouts, Logger: log}
	levels := &rtc.Levels{Reporter: n.bus}
	wh, err := whip.New(whip.Config{HTTPConfig: webrtcHTTP, Bus: n.bus, Levels: levels, Publishers: n.edge})
	if err != nil {
		return nil, err
	}
	n.whip = wh
	cat := n.catalog()
	we, err := whep.New(whep.Config{HTTPConfig: webrtcHTTP, Bus: n.bus, Hub: n.hub, Catalog: cat, Viewers: n.edge})
	if err != nil {
		return nil, err
	}
	if err = n.watchTrackEnds(runCtx, we.TrackEnded); err != nil {
		return nil, err
	}
	n.watchRegionTrackEnds(runCtx, we.TrackEnded)
	n.wg.Go(func() { we.RunRecheck(runCtx, whep.RecheckEvery, cat, log) })

	deliver := func(room string, spec signal.TrackSpec, onBound, onKeyframe func(layer string)) signal.DeliveredTrack {
		return &forward.Track{Hub: n.hub, Room: room, TrackID: spec.Track, Stream: spec.Peer,
			MediaKind: spec.Kind, Codec: spec.Codec, Fmtp: spec.FmtpLine, TopAudio: true, Layers: simulcastLayers(spec.Layers),
			OnBound: onBound, OnKeyframeRequest: onKeyframe}
	}
	sg, err := signal.New(signal.Config{API: n.edge.API, Publishers: n.edge, Sessions: n.sessions, Bus: n.bus, Deliver: deliver, Levels: levels,
		Rooms: n.rooms, Data: n.ctrl, Auth: n.keys, ResumeGrace: cfg.ResumeGrace, Limits: cfg.SignalLimits, Timeouts: timeouts, Place: n.placeRTC, Logger: log})
	if err != nil {
		return nil, err
	}
	// Sessions the log ended while this node served them (taken for lost while alive) are
	// found from the writes of their rooms' records (startPresence runs the rounds).
	n.selfEnd = &presence.SelfEnd{Rooms: n.rooms, Sessions: localSessions{n.sessions}, Logger: n.log}
	written := func(room string, seq uint64) {
		sg.RoomWritten(room, seq)
		n.selfEnd.Written(room, seq)
	}
	if err = n.watchRoomRecords(runCtx, written); err != nil {
		return nil, err
	}

	// Before the first viewer: the hub's audio choice and who speaks, told to room clients.
	n.hub.Audio(forward.AudioConfig{MaxStreams: cfg.MaxAudioStreams, OnSpeakers: sg.Speakers, SubscribeLevels: n.subscribeLevels})

	if err = n.startIngress(); err != nil {
		return nil, err
	}
	if err = n.startPresence(ctx, runCtx); err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	wh.Register(mux)
	we.Register(mux)
	sg.Register(mux)
	n.registerHTTP(mux)
	if err = n.startHTTP(n.placer(mux)); err != nil {
		return nil, err
	}
	log.Info("jetmedia node started", "http", n.HTTPURL(), "udp", n.edge.UDPAddr().String(),
		"nats", n.srv.ClientURL(), "leaf", n.srv.LeafURL(), "routes", n.srv.RouteURL(), "data", cfg.DataDir)
	return n, nil
}

// subscribeLevels subscribes to a room's audio-level reports for the hub's audio choice.
func (n *Node) subscribeLevels(room string, fn func([]byte)) (func() error, error) {
	sub, err := n.bus.SubscribeLevels(room, fn)
	if err != nil {
		return nil, err
	}
	return sub.Unsubscribe, nil
}

// HTTPURL is the base URL of the HTTP API.
func (n *Node) HTTPURL() string { return "http://" + n.httpLn.Addr().String() }

// RTMPAddr is the RTMP listener's address (host:port), "" when RTMP is off.
func (n *Node) RTMPAddr() string {
	if n.rtmp == nil {
		return ""
	}
	return n.rtmp.Addr().String()
}

// UDPAddr is the ICE UDP port's address.
func (n *Node) UDPAddr() *net.UDPAddr { return n.edge.UDPAddr() }

// JetStream is the node's JetStream client.
func (n *Node) JetStream() jetstream.JetStream { return n.js }

// Rooms is the rooms projection bucket.
func (n *Node) Rooms() jetstream.KeyValue { return n.rooms }

// Server is the embedded NATS server.
func (n *Node) Server() *natsnode.Server { return n.srv }

// Media returns the node's media-plane packet counters.
func (n *Node) Media() mediabus.MediaStats { return n.bus.Stats() }

// Forwarding returns the node's egress packet counters (forwarded, retransmitted on NACK,
// dropped).
func (n *Node) Forwarding() forward.Stats { return n.hub.Stats() }

// Estimates are the viewers' bandwidth estimates (nil with BWE off).
func (n *Node) Estimates() *rtc.Estimates { return n.edge.Estimates }

// FastIngest are the counters of the WebRTC port's fast ingest (--fast-ingest).
func (n *Node) FastIngest() rtc.FastIngestStats { return n.edge.FastIngestStats() }

// FastEgress are the counters of the WebRTC port's fast egress (--fast-egress).
func (n *Node) FastEgress() rtc.FastEgressStats { return n.edge.FastEgressStats() }

// Pacing are the counters of the pacing of what viewers are sent (zero with it off).
func (n *Node) Pacing() rtc.PacingStats { return n.edge.PacingStats() }

// Congestion is the viewers' bandwidth allocation (nil with BWE off).
func (n *Node) Congestion() *forward.Congestion { return n.congestion }

// ForwardedTracks is the number of track layers the node's hub holds a fan-out for (0 once every
// viewer has gone).
func (n *Node) ForwardedTracks() int { return n.hub.Tracks() }

// Name is the node's name.
func (n *Node) Name() string { return n.cfg.Name }

// CatchUp waits until the rooms projection is within projections.ReadyLag events of the log
// (what /readyz requires), calling progress about once a second meanwhile with the lag and
// the rate it falls at. A node restarted on a long log serves HTTP at once but is ready only
// then.
func (n *Node) CatchUp(ctx context.Context, progress func(lag uint64, perSecond float64)) error {
	var last uint64
	lastAt := time.Now()
	for {
		lag, err := n.ProjectionLag(ctx)
		if err == nil && projectionReady(lag) == nil {
			return nil
		}
		if now := time.Now(); err == nil && now.Sub(lastAt) >= time.Second {
			rate := 0.0
			if last > lag {
				rate = float64(last-lag) / now.Sub(lastAt).Seconds()
			}
			progress(lag, rate)
			last, lastAt = lag, now
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("rooms projection catching up: %w", ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Close ends every session (recording peer.left), stops HTTP, the projection and NATS, and
// waits for all of it. It is idempotent.
func (n *Node) Close() error {
	n.closeOnce.Do(func() {
		var errs []error
		if n.http != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			errs = append(errs, n.http.Shutdown(ctx))
			cancel()
		}
		if n.sessions != nil {
			errs = append(errs, n.sessions.Close())
		}
		if n.rtmp != nil {
			// After the sessions: they end with reason shutdown and close their connections.
			errs = append(errs, n.rtmp.Close())
		}
		errs = append(errs, n.sip.Close()) // after the sessions, which said BYE; nil when off
		if n.presence != nil {
			errs = append(errs, n.presence.Close()) // after the sessions wrote their ends
		}
		if n.hub != nil {
			n.hub.Close()
		}
		if n.edge != nil {
			errs = append(errs, n.edge.Close())
		}
		if n.stopProjection != nil {
			// Let the projection apply (and acknowledge) the sessions' last events, so a
			// restart does not wait for their redelivery.
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			if err := n.WaitProjected(ctx); err != nil {
				n.log.Warn("projection not caught up at shutdown; it resumes on restart", "err", err)
			}
			cancel()
			n.stopProjection()
		}
		if n.rm != nil {
			errs = append(errs, n.rm.Close()) // after its router stops, before NATS goes
		}
		n.closeWebhooks()
		if n.cancel != nil {
			n.cancel()
		}
		n.wg.Wait()
		for _, c := range []*nats.Conn{n.rtp, n.media, n.ctrl} {
			if c != nil {
				c.Close()
			}
		}
		if n.srv != nil {
			n.srv.Shutdown()
		}
		if n.unlock != nil {
			forgetNATS(n.cfg.DataDir)
			n.unlock()
		}
		n.closeErr = errors.Join(errs...)
	})
	return n.closeErr
}

// simulcastLayers is a track's layer list for forward.Track: none for a single layer.
func simulcastLayers(layers []string) []string {
	if len(layers) < 2 {
		return nil
	}
	return layers
}
