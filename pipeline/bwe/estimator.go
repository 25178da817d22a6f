package bwe

import (
	"math"
	"time"
)

// Config bounds an estimate, in bit/s.
type Config struct {
	// Initial is the estimate before any feedback (0: 1 Mbit/s); Min and Max bound it
	// (0: 100 kbit/s and 20 Mbit/s).
	Initial, Min, Max int
}

// Defaults fills the zero fields.
func (c Config) Defaults() Config {
	if c.Initial <= 0 {
		c.Initial = 1_000_000
	}
	if c.Min <= 0 {
		c.Min = 100_000
	}
	if c.Max <= 0 {
		c.Max = 20_000_000
	}
	c.Initial = min(max(c.Initial, c.Min), c.Max)
	return c
}

// Usage is what the delay-gradient detector says of the path.
type Usage uint8

// Usages.
const (
	Normal   Usage = iota // the queue neither grows nor drains
	Overuse               // the queue grows: sending more than the path carries
	Underuse              // the queue drains
)

func (u Usage) String() string {
	switch u {
	case Overuse:
		return "overuse"
	case Underuse:
		return "underuse"
	}
	return "normal"
}

// Estimate is an estimator's view of the path.
type Estimate struct {
	// Bitrate is what the path carries now, in bit/s: the smaller of LossBitrate and
	// DelayBitrate, within the configured bounds.
	Bitrate, LossBitrate, DelayBitrate int
	// Acked is the rate the viewer acknowledged receiving lately, in bit/s (0: not known).
	Acked int
	// Loss is the share of packets reported lost lately (smoothed).
	Loss float64
	// Usage is the delay detector's latest verdict.
	Usage Usage
	// Congested: loss above 10 %, or above 2 % while the delay detector sees overuse or
	// the delay-based rate was cut within the last second. Delay alone is not congestion:
	// a loaded machine's late reads look like a growing queue, and pausing a track is
	// drastic.
	Congested bool
	// Feedbacks counts the feedback messages taken into account.
	Feedbacks uint64
}

// Tuning, after the GCC draft (draft-ietf-rmcat-gcc-02) and libwebrtc's trendline estimator.
const (
	groupSpan        = 5 * time.Millisecond   // packets sent within this of a group's first form one group
	burstSpan        = 5 * time.Millisecond   // a group arriving within this of the last, early, belongs to it
	burstMax         = 100 * time.Millisecond // … unless the group already spans this much
	trendWindow      = 20                     // groups in the trendline's regression
	trendSmoothing   = 0.9
	trendGain        = 4.0
	trendMaxDeltas   = 60
	thresholdInitial = 12.5
	thresholdMin     = 6.0
	thresholdMax     = 600.0
	thresholdUp      = 0.0087 // adaptation when |trend| is above the threshold
	thresholdDown    = 0.039  // and below it
	overuseTime      = 10 * time.Millisecond
	decreaseFactor   = 0.85 // a cut is to this share of what was acknowledged
	increasePerSec   = 1.08 // multiplicative increase per second, delay and loss
	ackedHeadroom    = 1.5  // the delay-based rate grows to at most this times acked
	ackedWindow      = 250 * time.Millisecond
	lossMinPackets   = 50                     // a few late-recorded packets in one message are not loss
	lossSlowPackets  = 20                     // … but a slow stream is judged on 20 every lossSlowEvery
	lossSlowEvery    = 500 * time.Millisecond //
	lossHigh         = 0.10
	lossLow          = 0.02
	lossCutEvery     = 300 * time.Millisecond
	congestedRecency = time.Second
)

// group is packets sent together (within groupSpan), as the trendline sees them.
type group struct {
	firstSend, lastSend       time.Duration
	firstArrival, lastArrival time.Duration
}

// Estimator is one connection's send-side estimate. Not safe for concurrent use: the shell
// serialises feedback and reads.
type Estimator struct {
	cfg Config

	// Feedback bookkeeping: the receiver's reference time unwrapped, and the last
	// messages taken (a compound delivered to two senders would count twice).
	refSet bool
	ref    int64 // 64 ms units
	seen   [4]uint32
	seenAt int

	// Delay gradient.
	cur, prev         group
	haveCur, havePrev bool
	acc, smoothed     float64
	firstArrival      time.Duration
	trendX, trendY    [trendWindow]float64
	trendN, trendAt   int
	numDeltas         int
	threshold         float64
	lastThresholdAt   time.Duration
	thresholdStarted  bool
	prevTrend         float64
	overusing         time.Duration // -1: not overusing
	overuseCount      int
	usage             Usage
	delayRate         float64
	lastDelayUpdate   time.Duration
	delayUpdated      bool
	lastDecrease      time.Duration
	decreased         bool

	// Acknowledged rate: bytes received in the current window of arrival time.
	winBytes   int
	winStart   time.Duration
	winStarted bool
	acked      float64

	// Loss.
	lost, total    int
	loss           float64
	lossRate       float64
	lastLossUpdate time.Duration
	lossUpdated    bool
	lastLossCut    time.Duration
	lossCut        bool

	feedbacks uint64
}

// New returns an estimator at cfg.Initial.
func New(cfg Config) *Estimator {
	cfg = cfg.Defaults()
	return &Estimator{cfg: cfg, threshold: thresholdInitial, overusing: -1,
		delayRate: float64(cfg.Initial), lossRate: float64(cfg.Initial)}
}

// OnFeedback takes one feedback message received at now, looking the packets it reports up
// in h. A message seen just before (the same count and base) is ignored.
func (e *Estimator) OnFeedback(now time.Duration, fb *Feedback, h *History) {
	key := uint32(fb.FbCount)<<16 | uint32(fb.Base)
	for i := range min(e.feedbacks, uint64(len(e.seen))) {
		if e.seen[i] == key {
			return
		}
	}
	e.seen[e.seenAt] = key
	e.seenAt = (e.seenAt + 1) % len(e.seen)
	e.feedbacks++

	ref := int64(fb.RefTime)
	if e.refSet {
		// The nearest epoch of the 24-bit reference time.
		ref = e.ref + ((ref-e.ref+(1<<23))&0xffffff - (1 << 23))
	}
	e.ref, e.refSet = ref, true
	arrival := time.Duration(ref) * 64 * time.Millisecond

	pkts := fb.Packets()
	for {
		p, ok := pkts.Next()
		if !ok {
			break
		}
		if p.Received {
			arrival += time.Duration(p.Delta) * time.Microsecond
		}
		send, size, ok := h.Lookup(p.Seq)
		if !ok {
			continue
		}
		e.total++
		if !p.Received {
			e.lost++
			continue
		}
		e.ackedAdd(arrival, size)
		e.packet(now, send, arrival)
	}
	e.updateDelayRate(now)
	e.updateLoss(now)
}

// ackedAdd counts size bytes received at arrival toward the acknowledged rate.
func (e *Estimator) ackedAdd(arrival time.Duration, size int) {
	if !e.winStarted || arrival < e.winStart {
		e.winStart, e.winBytes, e.winStarted = arrival, 0, true
	}
	e.winBytes += size
	if span := arrival - e.winStart; span >= ackedWindow {
		sample := float64(e.winBytes) * 8 / span.Seconds()
		if e.acked == 0 {
			e.acked = sample
		} else {
			e.acked = 0.5*e.acked + 0.5*sample
		}
		e.winStart, e.winBytes = arrival, 0
	}
}

// packet takes one received packet into the packet groups; a completed group feeds the
// trendline.
func (e *Estimator) packet(now, send, arrival time.Duration) {
	if !e.haveCur {
		e.cur, e.haveCur = group{send, send, arrival, arrival}, true
		return
	}
	c := &e.cur
	if send < c.firstSend {
		return // sent before the group began: reordered, ignored
	}
	if send-c.firstSend <= groupSpan {
		c.lastSend = max(c.lastSend, send)
		c.lastArrival = max(c.lastArrival, arrival)
		return
	}
	// A burst: arriving close behind the group and sooner than it was sent after it.
	if da, ds := arrival-c.lastArrival, send-c.lastSend; da-ds < 0 && da <= burstSpan && arrival-c.firstArrival < burstMax {
		c.lastSend, c.lastArrival = send, max(c.lastArrival, arrival)
		return
	}
	if e.havePrev {
		e.delta(now, c.lastSend-e.prev.lastSend, c.lastArrival-e.prev.lastArrival, c.lastArrival)
	}
	e.prev, e.havePrev = *c, true
	e.cur = group{send, send, arrival, arrival}
}

// delta feeds one group's delay variation to the trendline and the detector.
func (e *Estimator) delta(now, sendDelta, arrivalDelta, arrival time.Duration) {
	if e.numDeltas == 0 {
		e.firstArrival = arrival
	}
	e.numDeltas = min(e.numDeltas+1, 1000)
	d := float64(arrivalDelta-sendDelta) / float64(time.Millisecond)
	e.acc += d
	e.smoothed = trendSmoothing*e.smoothed + (1-trendSmoothing)*e.acc
	e.trendX[e.trendAt] = float64(arrival-e.firstArrival) / float64(time.Millisecond)
	e.trendY[e.trendAt] = e.smoothed
	e.trendAt = (e.trendAt + 1) % trendWindow
	e.trendN = min(e.trendN+1, trendWindow)
	trend := e.prevTrend
	if e.trendN == trendWindow {
		if s, ok := slope(e.trendX[:], e.trendY[:]); ok {
			trend = float64(min(e.numDeltas, trendMaxDeltas)) * s * trendGain
		}
	}
	e.detect(now, trend, sendDelta)
}

// slope is the least-squares slope of y over x.
func slope(x, y []float64) (float64, bool) {
	var sx, sy float64
	for i := range x {
		sx += x[i]
		sy += y[i]
	}
	mx, my := sx/float64(len(x)), sy/float64(len(x))
	var num, den float64
	for i := range x {
		num += (x[i] - mx) * (y[i] - my)
		den += (x[i] - mx) * (x[i] - mx)
	}
	if den == 0 {
		return 0, false
	}
	return num / den, true
}

// detect compares the trend with the adaptive threshold.
func (e *Estimator) detect(now time.Duration, trend float64, sendDelta time.Duration) {
	switch {
	case e.numDeltas < 2:
		e.usage = Normal
	case trend > e.threshold:
		if e.overusing < 0 {
			e.overusing = sendDelta / 2
		} else {
			e.overusing += sendDelta
		}
		e.overuseCount++
		if e.overusing > overuseTime && e.overuseCount > 1 && trend >= e.prevTrend {
			e.overusing, e.overuseCount = 0, 0
			e.usage = Overuse
		}
	case trend < -e.threshold:
		e.overusing, e.overuseCount = -1, 0
		e.usage = Underuse
	default:
		e.overusing, e.overuseCount = -1, 0
		e.usage = Normal
	}
	e.prevTrend = trend
	e.adaptThreshold(now, trend)
}

// adaptThreshold moves the threshold toward |trend|: slowly up, faster down, so that it
// follows a path's jitter without hiding a real queue.
func (e *Estimator) adaptThreshold(now time.Duration, trend float64) {
	if !e.thresholdStarted {
		e.lastThresholdAt, e.thresholdStarted = now, true
	}
	abs := math.Abs(trend)
	if abs > e.threshold+15 {
		e.lastThresholdAt = now // a spike: not the path's normal jitter
		return
	}
	k := thresholdUp
	if abs < e.threshold {
		k = thresholdDown
	}
	dt := min(float64(now-e.lastThresholdAt)/float64(time.Millisecond), 100)
	e.threshold = min(max(e.threshold+k*(abs-e.threshold)*dt, thresholdMin), thresholdMax)
	e.lastThresholdAt = now
}

// updateDelayRate applies the detector's verdict to the delay-based rate, once per feedback.
func (e *Estimator) updateDelayRate(now time.Duration) {
	dt := time.Duration(0)
	if e.delayUpdated {
		dt = min(now-e.lastDelayUpdate, time.Second)
	}
	e.lastDelayUpdate, e.delayUpdated = now, true
	switch e.usage {
	case Overuse:
		base := e.delayRate
		if e.acked > 0 {
			base = e.acked
		}
		if cut := decreaseFactor * base; cut < e.delayRate {
			e.delayRate = cut
			e.lastDecrease, e.decreased = now, true
		}
	case Normal:
		// What the viewer acknowledged without a growing queue, the path carries: the
		// rate starts from there at once, then grows to at most ackedHeadroom times it.
		grown := max(e.delayRate, e.acked) * math.Pow(increasePerSec, dt.Seconds())
		if e.acked > 0 {
			grown = min(grown, max(e.delayRate, ackedHeadroom*e.acked+10_000))
		}
		e.delayRate = grown
	}
	e.delayRate = e.clamp(e.delayRate)
}

// updateLoss folds the packets counted since the last update into the loss share once there
// are enough of them (lossMinPackets, or lossSlowPackets after lossSlowEvery), and moves the
// loss-based rate by that sample: cut under heavy loss (at most every lossCutEvery), grown
// under little, held between. The decision follows the sample, not the smoothed share: once
// a sender has stepped down to what fits, the next window's clean sample lets the rate grow
// at once, where the smoothed share would go on cutting for seconds (a simulcast viewer's
// low layer under a 300 kbit/s cap was cut to 110 kbit/s and paused).
func (e *Estimator) updateLoss(now time.Duration) {
	slow := e.lossUpdated && now-e.lastLossUpdate >= lossSlowEvery && e.total >= lossSlowPackets
	if e.total < lossMinPackets && !slow {
		return
	}
	sample := float64(e.lost) / float64(e.total)
	e.lost, e.total = 0, 0
	if e.lossUpdated {
		e.loss = 0.5*e.loss + 0.5*sample
	} else {
		e.loss = sample
	}
	dt := time.Duration(0)
	if e.lossUpdated {
		dt = min(now-e.lastLossUpdate, time.Second)
	}
	e.lastLossUpdate, e.lossUpdated = now, true
	base := min(e.lossRate, e.delayRate)
	switch {
	case sample > lossHigh:
		if !e.lossCut || now-e.lastLossCut >= lossCutEvery {
			e.lossRate = base * (1 - 0.5*sample)
			e.lastLossCut, e.lossCut = now, true
		}
	case sample < lossLow:
		e.lossRate = max(base, e.acked)*math.Pow(increasePerSec, dt.Seconds()) + 1000
	}
	e.lossRate = e.clamp(e.lossRate)
}

func (e *Estimator) clamp(r float64) float64 {
	return min(max(r, float64(e.cfg.Min)), float64(e.cfg.Max))
}

// Estimate is the estimate at now.
func (e *Estimator) Estimate(now time.Duration) Estimate {
	out := Estimate{
		LossBitrate: int(e.lossRate), DelayBitrate: int(e.delayRate), Acked: int(e.acked),
		Loss: e.loss, Usage: e.usage, Feedbacks: e.feedbacks,
	}
	out.Bitrate = int(e.clamp(min(e.lossRate, e.delayRate)))
	recentCut := e.decreased && now-e.lastDecrease < congestedRecency
	out.Congested = e.loss > lossHigh || (e.loss > lossLow && (e.usage == Overuse || recentCut))
	return out
}
