package rtc

import (
	"errors"
	"fmt"
	"sync"

	"github.com/pion/interceptor"
	"github.com/pion/interceptor/pkg/cc"
	"github.com/pion/interceptor/pkg/gcc"
	"github.com/pion/interceptor/pkg/twcc"
	"github.com/pion/logging"
	"github.com/pion/rtcp"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"

	"github.com/jetmedia/jetmedia/pipeline/bwe"
	"github.com/jetmedia/jetmedia/pipeline/pacer"
)

// BWEConfig bounds the send-side bandwidth estimate of each viewer.
type BWEConfig struct {
	// Off disables the estimate: no transport-wide sequence numbers on what the edge sends,
	// no feedback asked of viewers.
	Off bool
	// Initial, Min and Max are the estimate's start and bounds in bit/s (0: 1 Mbit/s,
	// 100 kbit/s, 20 Mbit/s).
	Initial, Min, Max int
	// Estimator is EstimatorJetmedia (the default, pipeline/bwe) or EstimatorGCC
	// (pion/interceptor's GCC, for comparison: it allocates per packet and per feedback and
	// runs goroutines per viewer).
	Estimator string
	// Pacing paces what each viewer connection is sent by its estimate (pace.go); it needs
	// EstimatorJetmedia and is on unless Pacing.Off.
	Pacing PacingConfig
}

// Estimators BWEConfig.Estimator names.
const (
	EstimatorJetmedia = "jetmedia"
	EstimatorGCC      = "gcc"
)

// ErrEstimator is returned for an unknown BWEConfig.Estimator.
var ErrEstimator = errors.New("rtc: unknown bandwidth estimator")

// withDefaults fills the zero bounds with the estimator's defaults (bwe.Config.Defaults, for
// GCC too), the initial estimate within them.
func (c BWEConfig) withDefaults() BWEConfig {
	d := bwe.Config{Initial: c.Initial, Min: c.Min, Max: c.Max}.Defaults()
	c.Initial, c.Min, c.Max = d.Initial, d.Min, d.Max
	return c
}

// Estimate is a viewer's send-side bandwidth estimate.
type Estimate struct {
	// Bitrate is what the estimator says the path to the viewer carries now, in bit/s.
	Bitrate int
	// LossBitrate and DelayBitrate are the loss-based and delay-based halves it is the
	// smaller of; Loss is the share of packets the viewer reported lost lately.
	LossBitrate, DelayBitrate int
	Loss                      float64
	// Congested is set while the estimator sees congestion: loss above 10 %, or above 2 %
	// (where GCC's loss-based half stops growing) with the delay-based half detecting
	// overuse or decreasing. Delay alone is not enough: on a loaded machine the viewers'
	// late reads look like a growing queue, and pausing a track is drastic. Without it, an estimate below what is sent means only that it has not
	// grown yet: GCC grows it to 1.5 times what arrives, a step at a time.
	Congested bool
	// Connection identifies the viewer's PeerConnection: tracks with the same Connection
	// share one estimate.
	Connection string
	// Feedbacks counts the viewer's transport-wide feedback messages the estimate took (the
	// node's own estimator; 0 with GCC).
	Feedbacks uint64
}

// Estimates holds the bandwidth estimator of every PeerConnection of an edge, found by the
// PeerConnection's id or by the id of any of its senders (webrtc.TrackLocalContext.ID, what
// a track learns when it is bound).
type Estimates struct {
	mu       sync.Mutex
	byPC     map[string]connEstimator
	byStream map[string]connEstimator
}

// connEstimator is one PeerConnection's estimator: pion's GCC (estimator) or ours
// (twccEstimator).
type connEstimator interface {
	estimate() Estimate
	sending() bool // it has streams that carry transport-wide sequence numbers
}

func newEstimates() *Estimates {
	return &Estimates{byPC: map[string]connEstimator{}, byStream: map[string]connEstimator{}}
}

// Of returns the estimate of the PeerConnection that owns sender (a TrackLocalContext's ID,
// or the PeerConnection's own id); ok is false before its first track is bound, after it
// closed, and when the edge runs without estimates.
func (e *Estimates) Of(sender string) (Estimate, bool) {
	if e == nil {
		return Estimate{}, false
	}
	e.mu.Lock()
	est, ok := e.byStream[sender]
	if !ok {
		est, ok = e.byPC[sender]
	}
	e.mu.Unlock()
	if !ok {
		return Estimate{}, false
	}
	return est.estimate(), true
}

// congestedLoss is the loss share above which GCC's loss-based estimate stops growing;
// heavyLoss is loss that is congestion whatever the delay says (a full queue's tail drop).
const (
	congestedLoss = 0.02
	heavyLoss     = 0.1
)

// Estimate is Of for egress/forward's Estimator: the connection, its bit rate and whether
// the path is congested.
func (e *Estimates) Estimate(sender string) (conn string, bitrate int, congested, ok bool) {
	est, ok := e.Of(sender)
	return est.Connection, est.Bitrate, est.Congested, ok
}

// All returns the estimate of every PeerConnection that has sent media (its estimator has
// a stream), in no order.
func (e *Estimates) All() []Estimate {
	if e == nil {
		return nil
	}
	e.mu.Lock()
	ests := make([]connEstimator, 0, len(e.byPC))
	for _, est := range e.byPC {
		ests = append(ests, est)
	}
	e.mu.Unlock()
	out := make([]Estimate, 0, len(ests))
	for _, est := range ests {
		if est.sending() {
			out = append(out, est.estimate())
		}
	}
	return out
}

// estimator is pion's GCC for one PeerConnection, registered in Estimates under the
// PeerConnection's and its streams' ids.
type estimator struct {
	*gcc.SendSideBWE
	set *Estimates
	pc  string // set once pion says which PeerConnection it belongs to

	mu      sync.Mutex
	streams []string
}

// AddStream registers the stream's SSRC, and its retransmission SSRC when the viewer
// negotiated RTX, with the estimator's pacer: RTX packets then count as sent media and are
// written like the stream's own.
func (e *estimator) AddStream(info *interceptor.StreamInfo, w interceptor.RTPWriter) interceptor.RTPWriter {
	e.set.mu.Lock()
	e.set.byStream[info.ID] = e
	e.set.mu.Unlock()
	e.mu.Lock()
	e.streams = append(e.streams, info.ID)
	e.mu.Unlock()
	if info.SSRCRetransmission != 0 {
		rtx := *info
		rtx.SSRC = info.SSRCRetransmission
		e.SendSideBWE.AddStream(&rtx, w)
	}
	return e.SendSideBWE.AddStream(info, w)
}

func (e *estimator) sending() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.streams) > 0
}

// WriteRTCP feeds transport-wide feedback to GCC; other RTCP is none of its business.
func (e *estimator) WriteRTCP(pkts []rtcp.Packet, a interceptor.Attributes) error {
	return e.SendSideBWE.WriteRTCP(pkts, a)
}

func (e *estimator) estimate() Estimate {
	st := e.GetStats()
	out := Estimate{Bitrate: e.GetTargetBitrate(), Connection: e.pc}
	out.LossBitrate, _ = st["lossTargetBitrate"].(int)
	out.DelayBitrate, _ = st["delayTargetBitrate"].(int)
	out.Loss, _ = st["averageLoss"].(float64)
	usage, _ := st["usage"].(string)
	state, _ := st["state"].(string)
	out.Congested = out.Loss > heavyLoss || (out.Loss > congestedLoss && (usage == "overuse" || state == "decrease"))
	return out
}

// Close stops GCC and forgets the PeerConnection.
func (e *estimator) Close() error {
	e.set.mu.Lock()
	if e.set.byPC[e.pc] == e {
		delete(e.set.byPC, e.pc)
	}
	e.mu.Lock()
	for _, s := range e.streams {
		if e.set.byStream[s] == e {
			delete(e.set.byStream, s)
		}
	}
	e.mu.Unlock()
	e.set.mu.Unlock()
	return e.SendSideBWE.Close()
}

// addBWE registers transport-wide congestion control for what the edge sends: the
// transport-cc header extension (offered on sending transceivers only: publishers' streams
// keep what they had) and its feedback, a sequence number on every packet sent, and an
// estimator per PeerConnection fed by the viewer's feedback: ours (twcc.go) or pion's GCC.
func addBWE(me *webrtc.MediaEngine, ir *interceptor.Registry, cfg BWEConfig, lf logging.LoggerFactory,
	batch interface {
		Cork()
		Uncork()
	}) (*Estimates, *pacing, error) {
	cfg = cfg.withDefaults()
	for _, kind := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeVideo, webrtc.RTPCodecTypeAudio} {
		if err := me.RegisterHeaderExtension(webrtc.RTPHeaderExtensionCapability{URI: sdp.TransportCCURI}, kind,
			webrtc.RTPTransceiverDirectionSendonly); err != nil {
			return nil, nil, fmt.Errorf("rtc: transport-cc extension: %w", err)
		}
		me.RegisterFeedback(webrtc.RTCPFeedback{Type: webrtc.TypeRTCPFBTransportCC}, kind)
	}
	set := newEstimates()
	switch cfg.Estimator {
	case "", EstimatorJetmedia:
		ir.Add(&twccFactory{set: set, cfg: bwe.Config{Initial: cfg.Initial, Min: cfg.Min, Max: cfg.Max}})
		if cfg.Pacing.Off {
			return set, nil, nil
		}
		if _, err := pacer.New[*queuedPacket](cfg.Pacing.Pacer); err != nil {
			return nil, nil, fmt.Errorf("rtc: pacing: %w", err)
		}
		// Registered after the estimator: it runs first on the way out (pacingFactory).
		p := newPacing(cfg.Pacing, batch)
		ir.Add(&pacingFactory{p: p, set: set})
		return set, p, nil
	case EstimatorGCC:
		return set, nil, addGCC(ir, set, cfg, lf)
	}
	return nil, nil, fmt.Errorf("%w %q (want %s or %s)", ErrEstimator, cfg.Estimator, EstimatorJetmedia, EstimatorGCC)
}

// addGCC registers pion's GCC per PeerConnection and pion's transport-wide sequence
// numbers. GCC's own leaky-bucket pacer
// is not used: it queues every packet on a goroutine per viewer, and the fan-out already
// sends a viewer's packets in the order and at the rate they arrive; what to do with a
// lower estimate is the allocator's decision (fewer or lower layers), not a queue's.
func addGCC(ir *interceptor.Registry, set *Estimates, cfg BWEConfig, lf logging.LoggerFactory) error {
	f, err := cc.NewInterceptor(func() (cc.BandwidthEstimator, error) {
		g, err := gcc.NewSendSideBWE(gcc.SendSideBWEInitialBitrate(cfg.Initial), gcc.SendSideBWEMinBitrate(cfg.Min),
			gcc.SendSideBWEMaxBitrate(cfg.Max), gcc.SendSideBWEPacer(gcc.NewNoOpPacer()), gcc.WithLoggerFactory(lf))
		if err != nil {
			return nil, fmt.Errorf("rtc: gcc: %w", err)
		}
		return &estimator{SendSideBWE: g, set: set}, nil
	})
	if err != nil {
		return fmt.Errorf("rtc: congestion control: %w", err)
	}
	f.OnNewPeerConnection(func(id string, be cc.BandwidthEstimator) {
		e, ok := be.(*estimator)
		if !ok {
			return
		}
		e.pc = id
		set.mu.Lock()
		set.byPC[id] = e
		set.mu.Unlock()
	})
	// The estimator reads the transport-wide sequence numbers the header extension
	// interceptor writes, so that one runs first on the way out: registered after.
	ir.Add(f)
	tw, err := twcc.NewHeaderExtensionInterceptor()
	if err != nil {
		return fmt.Errorf("rtc: transport-cc sequence numbers: %w", err)
	}
	ir.Add(tw)
	return nil
}
