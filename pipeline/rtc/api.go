package rtc

import (
	"fmt"
	"log/slog"
	"net"
	"runtime"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/interceptor/pkg/nack"
	"github.com/pion/interceptor/pkg/report"
	"github.com/pion/logging"
	"github.com/pion/webrtc/v4"

	"github.com/jetmedia/jetmedia/pipeline/audiolevel"
	"github.com/jetmedia/jetmedia/pipeline/stagetime"
)

// Config configures the WebRTC media edge.
type Config struct {
	// UDPListen is where the single ICE UDP port listens (host:port). 0.0.0.0 (or ::) listens
	// on every interface and offers each up interface's addresses as host candidates,
	// loopback included, the list read again for every session; what the edge sends a peer
	// leaves from the address the peer sent to (Linux). A specific IP makes that IP the only
	// host candidate: 127.0.0.1 keeps media on this machine, for clients that offer loopback
	// candidates (pion, Chromium), not libnice's (GStreamer).
	UDPListen string
	// Announce replaces the host candidates' addresses (public IPs of a NATed host).
	Announce []string
	// Senders is how many goroutines send the fan-outs' batched packets, each to its own
	// share of the destinations (0: GOMAXPROCS, the cores Go uses).
	Senders int
	// NoGSO sends every packet as a datagram of its own. By default a viewer's packets
	// queued together leave as one message that the kernel segments (UDP GSO, Linux 4.18),
	// where the kernel has it.
	NoGSO bool
	// BWE configures the send-side bandwidth estimate of each viewer (Edge.Estimates).
	BWE BWEConfig
	// MaxPublishBitrate holds each publisher under this many bit/s with REMB, sent once a
	// second (0: no REMB).
	MaxPublishBitrate int
	// Timings, when set, get the arrival of every RTP datagram the edge reads and the queue
	// and send times of its batched sends (stagetime's Ingest, Queue and Send stages).
	Timings *stagetime.Timings
	// FastIngest has the edge's socket reader decrypt publishers' RTP and send it on itself
	// (NewPublisher, FastIngest), instead of through pion's goroutines.
	FastIngest bool
	// FastEgress has the edge protect and send viewers' RTP itself (NewViewer, FastEgress),
	// instead of through pion's SRTP session and ICE connection.
	FastEgress bool
	// Logger gets pion's log lines.
	Logger *slog.Logger
}

// Edge is a WebRTC API bound to one UDP port, shared by every session of a node.
type Edge struct {
	API *webrtc.API
	// Estimates are the viewers' bandwidth estimates (nil with BWE.Off).
	Estimates *Estimates
	pacing    *pacing // nil: no pacing
	conn      *batchConn
	mux       ice.UDPMux
	// se, me and ir are what API was built from, for the sessions that need an API of
	// their own (keyedAPI).
	se webrtc.SettingEngine
	me *webrtc.MediaEngine
	ir *interceptor.Registry
	// fastIngest is Config.FastIngest; fastCounts count what its FastIngests did.
	fastIngest bool
	fastCounts fastCounts
	// fastEgressOn is Config.FastEgress; fastEgress count what its FastEgresses did.
	fastEgressOn bool
	fastEgress   fastEgressCounts
}

// NewEdge opens the UDP port and builds the API.
func NewEdge(cfg Config) (*Edge, error) {
	udp, err := net.ListenPacket("udp", cfg.UDPListen)
	if err != nil {
		return nil, fmt.Errorf("rtc: listen udp %s: %w", cfg.UDPListen, err)
	}
	// Every session's packets leave through this socket; fan-outs send theirs in batches.
	senders := cfg.Senders
	if senders <= 0 {
		senders = runtime.GOMAXPROCS(0)
	}
	conn, fallback := newBatchConn(udp.(*net.UDPConn), senders, !cfg.NoGSO, cfg.Timings)
	if fallback != nil && cfg.Logger != nil {
		cfg.Logger.Warn("media edge sends without its fast path", "reason", fallback)
	}

	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	pionLog := logFactory{log: log.With("component", "pion")}
	mux := ice.NewUDPMuxDefault(ice.UDPMuxParams{UDPConn: conn, Logger: pionLog.NewLogger("udpmux")})
	if cfg.Logger != nil && len(cfg.Announce) == 0 {
		// Which addresses clients are offered (on every interface: as of now; each session
		// reads the list again) tells an operator at once whether a client can reach them.
		cfg.Logger.Info("media edge", "udp", conn.LocalAddr().String(), "candidates", mux.GetListenAddresses())
	}
	me, ir, est, pace, err := newEngine(cfg, pionLog, conn)
	if err != nil {
		_ = conn.Close()
		return nil, err
	}
	edge := &Edge{Estimates: est, pacing: pace, conn: conn, mux: mux, fastIngest: cfg.FastIngest, fastEgressOn: cfg.FastEgress}
	var se webrtc.SettingEngine
	se.SetICEUDPMux(mux)
	se.SetIncludeLoopbackCandidate(true)
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4, webrtc.NetworkTypeUDP6})
	se.SetICETimeouts(5*time.Second, 15*time.Second, 2*time.Second)
	if len(cfg.Announce) > 0 {
		// Host candidates carry the announced addresses instead of the bound one.
		if err := se.SetICEAddressRewriteRules(webrtc.ICEAddressRewriteRule{
			External: cfg.Announce, AsCandidateType: webrtc.ICECandidateTypeHost,
		}); err != nil {
			_ = edge.Close()
			return nil, fmt.Errorf("rtc: announce %v: %w", cfg.Announce, err)
		}
	}
	se.LoggerFactory = pionLog
	api := webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithInterceptorRegistry(ir), webrtc.WithSettingEngine(se))
	edge.API = api
	edge.se, edge.me, edge.ir = se, me, ir
	return edge, nil
}

// keyedAPI is an API like the edge's, for one PeerConnection, whose DTLS handshake keys
// learns; its interceptors are before, the edge's (as one chain) and after, in that order
// (the first wraps pion's SRTP read stream, the last sees the whole chain). A pion API is
// a few pointers: the MediaEngine is copied for each PeerConnection anyway and the
// interceptors built for each from the same factories.
func (e *Edge) keyedAPI(keys *SRTPKeys, before, after []interceptor.Factory) (*webrtc.API, error) {
	se := e.se
	if err := keys.Bind(&se); err != nil {
		return nil, err
	}
	ir := &interceptor.Registry{}
	for _, f := range before {
		ir.Add(f)
	}
	ir.Add(chainFactory{e.ir})
	for _, f := range after {
		ir.Add(f)
	}
	return webrtc.NewAPI(webrtc.WithMediaEngine(e.me), webrtc.WithInterceptorRegistry(ir), webrtc.WithSettingEngine(se)), nil
}

// chainFactory builds a registry's interceptors as one.
type chainFactory struct{ ir *interceptor.Registry }

func (f chainFactory) NewInterceptor(id string) (interceptor.Interceptor, error) {
	c, err := f.ir.Build(id)
	if err != nil {
		return nil, fmt.Errorf("rtc: edge interceptors: %w", err)
	}
	return c, nil
}

// UDPAddr is the address the ICE port is bound to.
func (e *Edge) UDPAddr() *net.UDPAddr { return e.conn.LocalAddr().(*net.UDPAddr) }

// WriteStats are the counters of the edge socket's writes.
func (e *Edge) WriteStats() BatchStats { return e.conn.Stats() }

// Cork queues every session's packets on the edge socket until Uncork, which sends them in
// as few system calls as it can: a fan-out corks around the writes of one packet to all its
// viewers.
func (e *Edge) Cork() { e.conn.Cork() }

// Uncork ends a Cork and sends what is queued.
func (e *Edge) Uncork() { e.conn.Uncork() }

// PacingStats are the counters of the pacing of what viewers are sent (zero without it).
func (e *Edge) PacingStats() PacingStats { return e.pacing.stats() }

// Close releases the UDP port and stops the pacing. Sessions must be closed first.
func (e *Edge) Close() error {
	if e.pacing != nil {
		e.pacing.close()
	}
	// The mux owns the socket and closes it.
	return e.mux.Close()
}

// newEngine registers the codecs jetmedia forwards and the interceptors every session uses:
// RTCP sender/receiver reports, NACK generation and REMB toward publishers, transport-wide
// congestion control toward viewers (bwe.go). Viewers' NACKs are
// answered by egress from one packet cache per track per node, not by a pion responder per
// viewer (which costs megabytes each), so no responder is registered; the nack feedback is
// still advertised.
func newEngine(cfg Config, lf logging.LoggerFactory, batch interface {
	Cork()
	Uncork()
}) (*webrtc.MediaEngine, *interceptor.Registry, *Estimates, *pacing, error) {
	me, ir, err := newBaseEngine()
	if err != nil {
		return nil, nil, nil, nil, err
	}
	if cfg.MaxPublishBitrate > 0 {
		ir.Add(&rembFactory{bitrate: float32(cfg.MaxPublishBitrate)})
	}
	if cfg.BWE.Off {
		return me, ir, nil, nil, nil
	}
	est, pace, err := addBWE(me, ir, cfg.BWE, lf, batch)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	return me, ir, est, pace, nil
}

// newBaseEngine is the codecs, NACK generation and RTCP reports.
func newBaseEngine() (*webrtc.MediaEngine, *interceptor.Registry, error) {
	me := &webrtc.MediaEngine{}
	if err := me.RegisterDefaultCodecs(); err != nil {
		return nil, nil, fmt.Errorf("rtc: codecs: %w", err)
	}
	me.RegisterFeedback(webrtc.RTCPFeedback{Type: "nack"}, webrtc.RTPCodecTypeVideo)
	me.RegisterFeedback(webrtc.RTCPFeedback{Type: "nack", Parameter: "pli"}, webrtc.RTPCodecTypeVideo)
	me.RegisterFeedback(webrtc.RTCPFeedback{Type: "ccm", Parameter: "fir"}, webrtc.RTPCodecTypeVideo)
	// Publishers' audio carries its level (RFC 6464): the active speaker and the choice of
	// the loudest tracks to forward are made from it. Chromium sends it once answered.
	if err := me.RegisterHeaderExtension(webrtc.RTPHeaderExtensionCapability{URI: audiolevel.URI}, webrtc.RTPCodecTypeAudio); err != nil {
		return nil, nil, fmt.Errorf("rtc: audio level extension: %w", err)
	}
	// Simulcast publishers (RID layers) need mid, rtp-stream-id and repaired-rtp-stream-id in
	// the answer: Chromium refuses an answer that echoes a=simulcast without them. Forwarded
	// packets lose the publisher's extensions (forward.Rewriter): a viewer's ids are its own.
	if err := webrtc.ConfigureSimulcastExtensionHeaders(me); err != nil {
		return nil, nil, fmt.Errorf("rtc: simulcast header extensions: %w", err)
	}
	ir := &interceptor.Registry{}
	gen, err := nack.NewGeneratorInterceptor()
	if err != nil {
		return nil, nil, fmt.Errorf("rtc: nack generator: %w", err)
	}
	ir.Add(gen)
	rep, err := report.NewReceiverInterceptor()
	if err != nil {
		return nil, nil, fmt.Errorf("rtc: receiver reports: %w", err)
	}
	ir.Add(senderReports{rep})
	srep, err := report.NewSenderInterceptor()
	if err != nil {
		return nil, nil, fmt.Errorf("rtc: sender reports: %w", err)
	}
	ir.Add(srep)
	return me, ir, nil
}
