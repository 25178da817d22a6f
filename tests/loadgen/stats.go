package loadgen

import (
	"math/bits"
	"slices"
	"sync/atomic"
	"time"
)

// latencies are a run's end-to-end latency histograms, recorded into while it is measuring
// (its hold): arrival from the publisher's send to the packet's arrival at the subscriber's
// socket, read to when the subscriber's reader had it (Report.Latency and ReadLatency).
type latencies struct {
	measuring     atomic.Bool
	arrival, read Histogram
}

// Histogram counts durations in log-linear buckets of microseconds: exact below 128 µs, then
// 64 buckets per power of two (under 1.6 % error), up to about 19 hours. Record is safe for
// concurrent use and does not allocate; a zero Histogram is ready.
type Histogram struct {
	buckets [histBuckets]atomic.Uint64
	count   atomic.Uint64
	max     atomic.Int64 // microseconds
}

const (
	histLinear  = 128 // exact buckets 0..127 µs
	histSub     = 64  // buckets per power of two above
	histShifts  = 30
	histBuckets = histLinear + histShifts*histSub
)

// bucketOf is the bucket index of v microseconds.
func bucketOf(v uint64) int {
	if v < histLinear {
		return int(v)
	}
	shift := bits.Len64(v) - 7 // v>>shift is in [64, 128)
	if shift > histShifts {
		return histBuckets - 1
	}
	return histLinear + (shift-1)*histSub + int(v>>shift) - histSub
}

// bucketValue is the middle of bucket i, in microseconds.
func bucketValue(i int) float64 {
	if i < histLinear {
		return float64(i)
	}
	shift := (i-histLinear)/histSub + 1
	low := uint64((i-histLinear)%histSub+histSub) << shift
	return float64(low) + float64(uint64(1)<<shift)/2
}

// Record adds one duration; negative ones (clock steps) count as zero.
func (h *Histogram) Record(d time.Duration) {
	us := max(d.Microseconds(), 0)
	h.buckets[bucketOf(uint64(us))].Add(1)
	h.count.Add(1)
	for {
		m := h.max.Load()
		if us <= m || h.max.CompareAndSwap(m, us) {
			break
		}
	}
}

// Count is the number of durations recorded.
func (h *Histogram) Count() uint64 { return h.count.Load() }

// Merge adds o's counts to h.
func (h *Histogram) Merge(o *Histogram) {
	for i := range o.buckets {
		if n := o.buckets[i].Load(); n > 0 {
			h.buckets[i].Add(n)
		}
	}
	h.count.Add(o.count.Load())
	for {
		m, om := h.max.Load(), o.max.Load()
		if om <= m || h.max.CompareAndSwap(m, om) {
			break
		}
	}
}

// Quantile is the duration below which a fraction q (0..1) of the recordings fall, or 0 with
// none. The largest recording is exact (q = 1).
func (h *Histogram) Quantile(q float64) time.Duration {
	total := h.count.Load()
	if total == 0 {
		return 0
	}
	if q >= 1 {
		return time.Duration(h.max.Load()) * time.Microsecond
	}
	rank := uint64(q*float64(total-1)) + 1 // 1-based rank of the sample wanted
	var seen uint64
	for i := range h.buckets {
		seen += h.buckets[i].Load()
		if seen >= rank {
			v := min(bucketValue(i), float64(h.max.Load()))
			return time.Duration(v * float64(time.Microsecond))
		}
	}
	return time.Duration(h.max.Load()) * time.Microsecond
}

// percentile is the nearest-rank q-quantile of ds (not sorted in place), 0 for none.
func percentile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(q*float64(len(s)-1) + 0.5)
	return s[min(max(i, 0), len(s)-1)]
}

// seqTracker accounts one received track by its probe sequence numbers: unique packets,
// duplicates (retransmissions of packets that had arrived), and the range a loss figure is
// measured over (from the first packet received to the last one sent). Not safe for
// concurrent use: one reader goroutine owns it.
type seqTracker struct {
	started        bool
	first, highest uint32
	unique, dups   uint64
	window         [seqWindow]uint32 // seq+1 of the packet seen in each slot
}

// seqWindow covers several seconds of a 2 Mbit/s track: retransmissions arrive well within it.
const seqWindow = 4096

// add accounts one packet.
func (t *seqTracker) add(seq uint32) {
	if !t.started {
		t.started, t.first, t.highest = true, seq, seq
	}
	slot := &t.window[seq%seqWindow]
	if *slot == seq+1 {
		t.dups++
		return
	}
	*slot = seq + 1
	t.unique++
	if seq > t.highest {
		t.highest = seq
	}
	if seq < t.first {
		t.first = seq // reordered around the join
	}
}

// loss is what the tracker expected (every packet from the first it received to lastSent,
// the last the publisher sent) and how many of those never arrived.
func (t *seqTracker) loss(lastSent uint32) (expected, lost uint64) {
	if !t.started {
		return 0, 0
	}
	if lastSent < t.highest {
		lastSent = t.highest
	}
	expected = uint64(lastSent-t.first) + 1
	if t.unique >= expected {
		return expected, 0
	}
	return expected, expected - t.unique
}

// lossPercent is lost as a percentage of expected (0 when nothing was expected).
func lossPercent(expected, lost uint64) float64 {
	if expected == 0 {
		return 0
	}
	return 100 * float64(lost) / float64(expected)
}
