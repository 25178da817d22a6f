package app

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/jetmedia/jetmedia/egress/webhook"
	"github.com/jetmedia/jetmedia/events"
	"github.com/jetmedia/jetmedia/ingress/rtmp"
	"github.com/jetmedia/jetmedia/ingress/signal"
	"github.com/jetmedia/jetmedia/pipeline/auth"
	"github.com/jetmedia/jetmedia/pipeline/eventlog"
	"github.com/jetmedia/jetmedia/pipeline/httpserver"
	"github.com/jetmedia/jetmedia/pipeline/rtc"
	"github.com/jetmedia/jetmedia/projections"
	"github.com/jetmedia/jetmedia/projections/presence"
)

// Config is a node's configuration. Defaults() gives one that works on one machine.
type Config struct {
	// Name identifies the node in events and in the NATS system (default: from the hostname).
	Name string
	// DataDir holds JetStream's files (default ./data).
	DataDir string
	// HTTPAddr is where the HTTP API, WHIP, WHEP and the demo page listen (127.0.0.1:8080).
	HTTPAddr string
	// RTMPAddr, when set (host:port), accepts RTMP publishers (OBS, ffmpeg) at
	// rtmp://RTMPAddr/live/<room>. Empty (the default): no RTMP listener (docs/rtmp.md says why).
	RTMPAddr string
	// RTMPAudio turns the AAC of RTMP publishers into Opus with an ffmpeg child process.
	RTMPAudio rtmp.AudioConfig
	// SIP is the SIP gateway (off unless SIP.Listen is set).
	SIP SIPConfig
	// UDPHost and UDPPort are the single ICE UDP port every WebRTC session shares
	// (0.0.0.0:8443: every interface, each up interface's addresses offered as ICE host
	// candidates, loopback included, so that GStreamer/libnice on this machine and browsers
	// on the LAN connect). 127.0.0.1 keeps media on loopback (clients on this machine that
	// offer loopback candidates: pion, Chromium). UDPPort 0 picks a free port.
	UDPHost string
	UDPPort int
	// Announce lists the IPs to announce in ICE candidates instead of the bound one (NAT).
	Announce []string
	// NATSListen, when set (host:port), opens the embedded NATS server to clients such as the
	// nats CLI and other jetmedia commands. Empty: in-process only.
	NATSListen string
	// NATSReaderPassword, when set, is the password outside NATS clients give as user
	// "reader" (read and consume only); clients without credentials are then refused. Empty:
	// clients without credentials are readers. Only the node's own connections write.
	NATSReaderPassword string
	// LeafPassword is what leaf nodes give their hub as user "jetmedia-leaf" (on the hub:
	// what it requires; on a leaf: what it gives, unless --hub carries credentials).
	LeafPassword string
	// ClusterListen (host:port) opens a NATS route port; Routes lists other nodes' route URLs
	// (nats://host:port). Nodes joined by routes form one cluster (one region).
	ClusterListen string
	Routes        []string
	// ClusterName names the cluster (default "jetmedia").
	ClusterName string
	// LeafListen (host:port) accepts leaf nodes: this node becomes a hub. Hub
	// (nats-leaf://host:port) makes this node a leaf of that hub.
	LeafListen string
	Hub        string
	// NATSConfig is a nats-server configuration file (its own format: gateways, leafnodes,
	// accounts, TLS) merged under the node's settings (pipeline/natsnode/configfile.go says
	// which wins); docs/cluster.md.
	NATSConfig string
	// JSDomain is the JetStream domain of an edge (a leaf with JetStream: --hub without
	// --jetstream=false), default "edge-<name>". HubDomain is the region's domain the edge's log
	// is sourced into, and media-only leaves use (default "jetmedia").
	JSDomain  string
	HubDomain string
	// fileRoutes are NATSConfig's routes, counted by ClusterSize (set by Start).
	fileRoutes []string
	// JetStream runs JetStream on this node (default true). A node without it is a media-only
	// node that uses the JetStream of the hub or cluster it joins.
	JetStream bool
	// Storage sets the event log's retention (default: keep everything). Its Replicas is set
	// from Replicas at start.
	Storage eventlog.StorageConfig
	// LogRegion is the cluster (the region of a supercluster, its cluster name) that holds the
	// log and the buckets, placed there by every node that declares them; nodes of other
	// regions and media-only leaves wait for that region's nodes to declare them ("", the
	// default: the cluster of whichever node declares them first). An edge ignores it: its log
	// lives in its own domain. docs/cluster.md.
	LogRegion string
	// Replicas of the EVENTS stream and every bucket inside the cluster (0, the default: 3 in
	// a cluster of 3 or more nodes by its routes, else 1). It cannot exceed the cluster's size.
	Replicas int
	// Zone is where the node runs (a data centre, region or rack), announced in its lease for
	// placement and operators; empty is fine.
	Zone string
	// MaxSessions is this node's admission limit: new WHIP, WHEP and room (/rtc) sessions
	// beyond it are sent elsewhere or refused (503; a room join gets error "full") (0, the
	// default: none). Announced in the lease.
	MaxSessions int
	// Placement answers new WHIP and WHEP sessions with a 307, and room joins on /rtc with a
	// redirect message, to the node that should serve them (same zone first, then least
	// loaded; default on). Off, each node serves what it is sent, up to MaxSessions.
	Placement bool
	// Presence sets the rhythm of the node's lease in the nodes bucket (docs/cluster.md).
	Presence presence.Timing
	// EdgeLostAfter, on a region node, forgets an edge whose log the region has not heard from
	// for this long, as `jetmedia cluster forget` does (presence.EdgeLost); 0, the default:
	// never, an operator decides.
	EdgeLostAfter time.Duration
	// Timeouts of WebRTC sessions (connect timeout, disconnect grace, PLI interval).
	ConnectTimeout  time.Duration
	DisconnectGrace time.Duration
	// ResumeGrace is how long a room SDK session outlives a WebSocket that dropped without a
	// leave, waiting for the client to resume it (default 10 s; 0: the peer leaves at once).
	ResumeGrace time.Duration
	// SignalLimits bound each room SDK peer's client messages (zero fields: the defaults of
	// signal.DefaultLimits, 10/s burst 20 for events, 50/s burst 100 for data).
	SignalLimits signal.Limits
	// FanoutLanes is how many goroutines may write one track's packets to its viewers on this
	// node, one per forward.LaneMin viewers (default: GOMAXPROCS, the cores Go uses; 1: the
	// goroutine that receives the track writes them all).
	FanoutLanes int
	// MaxAudioStreams is how many of a room's audio tracks this node forwards to its viewers:
	// the loudest speakers, then those who spoke last (default 3; 0: every one). The choice is
	// made once per room per node from the publishers' audio levels (docs/audio.md).
	MaxAudioStreams int
	// SnapshotsKeep is how many snapshots of each room the node keeps when it writes one
	// (projections.SnapshotKeepDefault, 3); older ones are deleted (docs/snapshots.md).
	SnapshotsKeep int
	// EdgeSenders is how many goroutines send the batched packets of this node's WebRTC
	// port, each to its share of the destinations (default: GOMAXPROCS).
	EdgeSenders int
	// EdgeGSO lets the WebRTC port send a viewer's queued packets as one message the kernel
	// segments (UDP GSO; default on where the kernel has it).
	EdgeGSO bool
	// BWE estimates each viewer's bandwidth from its transport-wide congestion feedback
	// and lets the allocator pause video a viewer's path cannot carry (default on).
	BWE bool
	// BWEEstimator is the estimator BWE uses: rtc.EstimatorJetmedia (default, pipeline/bwe)
	// or rtc.EstimatorGCC (pion's GCC, for comparison).
	BWEEstimator string
	// Pacing paces what each viewer is sent at 2.5 times its estimate (default on; needs
	// BWE with rtc.EstimatorJetmedia, off otherwise).
	Pacing bool
	// BWEMaxBitrate is the highest estimate a viewer may have, in bit/s (0: 20 Mbit/s).
	BWEMaxBitrate int
	// MaxPublishBitrate caps each publisher's send rate, in bit/s, with a REMB once a second
	// (default 4 Mbit/s; 0: no REMB).
	MaxPublishBitrate int
	// FastIngest has the WebRTC port's reader decrypt publishers' RTP (WHIP, room SDK)
	// itself, one goroutine hand-off instead of pion's four (default off; rtc.FastIngest).
	FastIngest bool
	// FastEgress has the node protect and send WHEP viewers' RTP itself, past pion's SRTP
	// session and ICE connection (default off; rtc.FastEgress).
	FastEgress bool
	// HTTP protects the HTTP server: timeouts, connection cap, allowed origins
	// (pipeline/httpserver; README "Flags").
	HTTP httpserver.Config
	// AuthKeys verify access tokens (the first one signs). None: dev mode, with a random key
	// and GET /dev/token to mint tokens (README "Auth").
	AuthKeys []auth.Key
	// Webhooks are the endpoints that receive events, with their delivery settings
	// (egress/webhook; docs/webhooks.md). No endpoints: no delivery.
	Webhooks webhook.Config
	Logger   *slog.Logger
}

// validateForwarding checks the fan-out's settings.
func (c Config) validateForwarding() error {
	var errs []error
	if c.FanoutLanes < 1 {
		errs = append(errs, fmt.Errorf("fan-out lanes %d: at least 1", c.FanoutLanes))
	}
	if c.MaxAudioStreams < 0 {
		errs = append(errs, fmt.Errorf("max audio streams %d is negative (0 forwards every audio track)", c.MaxAudioStreams))
	}
	if c.EdgeSenders < 1 {
		errs = append(errs, fmt.Errorf("edge senders %d: at least 1", c.EdgeSenders))
	}
	return errors.Join(errs...)
}

// Defaults returns the documented defaults.
func Defaults() Config {
	c := Config{
		Name:            defaultName(),
		DataDir:         "./data",
		HTTPAddr:        "127.0.0.1:8080",
		UDPHost:         "0.0.0.0",
		UDPPort:         8443,
		JetStream:       true,
		ConnectTimeout:  30 * time.Second,
		DisconnectGrace: 10 * time.Second,
		ResumeGrace:     10 * time.Second,
		FanoutLanes:     runtime.GOMAXPROCS(0),
		MaxAudioStreams: 3,
		SnapshotsKeep:   projections.SnapshotKeepDefault,
		EdgeSenders:     runtime.GOMAXPROCS(0),
		EdgeGSO:         true,
		Webhooks:        webhook.Defaults(),
		HTTP:            httpserver.Defaults(),
		Presence:        presence.DefaultTiming(),
		Placement:       true,
	}
	c.BWE, c.BWEEstimator, c.MaxPublishBitrate, c.Pacing = true, rtc.EstimatorJetmedia, 4_000_000, true
	return c
}

// mediaErrors checks the media settings of congestion control.
func (c Config) mediaErrors() []error {
	var errs []error
	if c.MaxPublishBitrate < 0 {
		errs = append(errs, fmt.Errorf("max publish bitrate %d: 0 (no cap) or more", c.MaxPublishBitrate))
	}
	if c.BWEMaxBitrate < 0 {
		errs = append(errs, fmt.Errorf("bwe max bitrate %d: 0 (default) or more", c.BWEMaxBitrate))
	}
	if c.BWEEstimator != rtc.EstimatorJetmedia && c.BWEEstimator != rtc.EstimatorGCC {
		errs = append(errs, fmt.Errorf("bwe estimator %q: %s or %s", c.BWEEstimator, rtc.EstimatorJetmedia, rtc.EstimatorGCC))
	}
	return errs
}

var nonID = regexp.MustCompile(`[^A-Za-z0-9_-]+`)

func defaultName() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "jetmedia"
	}
	h = nonID.ReplaceAllString(strings.Split(h, ".")[0], "-")
	if len(h) > 64 {
		h = h[:64]
	}
	if !events.ValidID(h) {
		return "jetmedia"
	}
	return h
}

// validateRTMP checks the RTMP listen address, if any.
func (c Config) validateRTMP() error {
	if c.RTMPAddr == "" {
		return nil
	}
	if _, _, err := net.SplitHostPort(c.RTMPAddr); err != nil {
		return fmt.Errorf("rtmp address %q: %w", c.RTMPAddr, err)
	}
	return nil
}

// Validate reports every problem of the config at once.
func (c Config) Validate() error {
	var errs []error
	if !events.ValidID(c.Name) {
		errs = append(errs, fmt.Errorf("name %q: use 1-64 of A-Z a-z 0-9 _ -", c.Name))
	}
	if c.JetStream && c.DataDir == "" {
		errs = append(errs, errors.New("data dir is empty"))
	}
	if _, _, err := net.SplitHostPort(c.HTTPAddr); err != nil {
		errs = append(errs, fmt.Errorf("http address %q: %w", c.HTTPAddr, err))
	}
	errs = append(errs, c.HTTP.Validate())
	errs = append(errs, c.validateRTMP(), c.SIP.validate())
	if c.ResumeGrace < 0 {
		errs = append(errs, fmt.Errorf("resume grace %v is negative", c.ResumeGrace))
	}
	if c.SnapshotsKeep < 1 {
		errs = append(errs, fmt.Errorf("snapshots kept per room %d: at least 1", c.SnapshotsKeep))
	}
	if err := c.SignalLimits.Validate(); err != nil {
		errs = append(errs, err)
	}
	errs = append(errs, c.validateForwarding())
	errs = append(errs, c.mediaErrors()...)
	errs = append(errs, c.validateUDP(), c.validateCluster(), c.Presence.Validate())
	if len(c.AuthKeys) > 0 {
		if _, err := auth.NewKeyring(c.AuthKeys...); err != nil {
			errs = append(errs, err)
		}
	}
	if len(c.Webhooks.Endpoints) > 0 {
		errs = append(errs, c.Webhooks.Validate())
	}
	return errors.Join(errs...)
}

func (c Config) validateUDP() error {
	var errs []error
	if c.UDPPort < 0 || c.UDPPort > 65535 {
		errs = append(errs, fmt.Errorf("udp port %d out of range", c.UDPPort))
	}
	if net.ParseIP(c.UDPHost) == nil {
		errs = append(errs, fmt.Errorf("udp host %q is not an IP address", c.UDPHost))
	}
	for _, ip := range c.Announce {
		if net.ParseIP(ip) == nil {
			errs = append(errs, fmt.Errorf("announce %q is not an IP address", ip))
		}
	}
	return errors.Join(errs...)
}

func (c Config) validateCluster() error {
	var errs []error
	if c.ClusterListen != "" && c.NATSListen == "" {
		errs = append(errs, errors.New("a cluster node needs a NATS client listen address (--nats-listen; 127.0.0.1:0 is fine)"))
	}
	if len(c.Routes) > 0 && c.ClusterListen == "" {
		errs = append(errs, errors.New("routes need a cluster listen address"))
	}
	if c.Replicas < 0 {
		errs = append(errs, fmt.Errorf("replicas %d: at least 1 (0: automatic)", c.Replicas))
	}
	if size := c.ClusterSize(); c.Replicas > size {
		errs = append(errs, fmt.Errorf("--replicas %d exceeds the cluster's %d node(s) (its routes, this node included)", c.Replicas, size))
	}
	if !c.JetStream && len(c.Routes) == 0 && c.Hub == "" && c.NATSConfig == "" {
		errs = append(errs, errors.New("a node without JetStream must join a hub (--hub) or a cluster (--routes)"))
	}
	errs = append(errs, c.validateEdgeLost())
	if c.MaxSessions < 0 {
		errs = append(errs, fmt.Errorf("max sessions %d: at least 0 (0: no limit)", c.MaxSessions))
	}
	if c.joinsOthers() && len(c.AuthKeys) == 0 {
		// One keyring for the system: dev mode's random per-process key would make every node
		// refuse the tokens of the others.
		errs = append(errs, errors.New("a node joined to others (--routes, --cluster-listen, --hub, --leaf-listen or --nats-config) needs the system's signing key: set the same --auth-key (or JETMEDIA_AUTH_KEYS) on every node; dev mode's random key is per process"))
	}
	return errors.Join(errs...)
}

// joinsOthers reports whether the node is configured to be part of a system of nodes.
func (c Config) joinsOthers() bool {
	return len(c.Routes) > 0 || c.ClusterListen != "" || c.Hub != "" || c.LeafListen != "" || c.NATSConfig != ""
}

// Edge reports whether the node is an edge: a leaf with JetStream of its own (docs/cluster.md).
func (c Config) Edge() bool { return c.JetStream && c.Hub != "" }

// EdgeDomain is the JetStream domain of an edge: JSDomain, or "edge-<name>".
func (c Config) EdgeDomain() string {
	if c.JSDomain != "" {
		return c.JSDomain
	}
	return "edge-" + c.Name
}

// ClusterSize is the number of nodes of this node's cluster as its routes tell: the distinct
// route URLs, plus this node when its own route port is not among them (1 without routes). A
// route with this node's port counts as this node when it listens on every interface.
func (c Config) ClusterSize() int {
	urls := map[string]bool{}
	self := c.ClusterListen == ""
	lh, lp, _ := net.SplitHostPort(c.ClusterListen)
	anyHost := lh == "" || net.ParseIP(lh) != nil && net.ParseIP(lh).IsUnspecified()
	for _, r := range append(slices.Clone(c.Routes), c.fileRoutes...) {
		hp := strings.TrimPrefix(strings.TrimSuffix(r, "/"), "nats://")
		urls[hp] = true
		if _, p, err := net.SplitHostPort(hp); hp == c.ClusterListen || err == nil && anyHost && p == lp {
			self = true
		}
	}
	if !self {
		return len(urls) + 1
	}
	return max(len(urls), 1)
}

// EffectiveReplicas is the replica count of the stream and buckets: Replicas, or with 0, 3 in
// a cluster of 3 or more and 1 otherwise.
func (c Config) EffectiveReplicas() int {
	switch {
	case c.Replicas > 0:
		return c.Replicas
	case c.ClusterSize() >= 3:
		return 3
	}
	return 1
}

// validateEdgeLost: --edge-lost-after is off or longer than two lease TTLs (an edge must not
// be forgotten for a silence its own lease would ride out).
func (c Config) validateEdgeLost() error {
	if c.EdgeLostAfter < 0 || c.EdgeLostAfter > 0 && c.EdgeLostAfter < 2*c.Presence.TTL {
		return fmt.Errorf("--edge-lost-after %v: 0 (never) or at least two lease TTLs (%v)", c.EdgeLostAfter, 2*c.Presence.TTL)
	}
	return nil
}
