package stagetime

import (
	"math/bits"
	"sync/atomic"
	"time"
)

// Stage is one step of the forward path.
type Stage int

// The stages (see the package comment).
const (
	Ingest Stage = iota
	Fanout
	Queue
	Send
	numStages
)

// Stages lists every stage in the order a packet meets them.
var Stages = [...]Stage{Ingest, Fanout, Queue, Send}

// String is the stage's metric label.
func (s Stage) String() string {
	switch s {
	case Ingest:
		return "ingest"
	case Fanout:
		return "fanout"
	case Queue:
		return "queue"
	case Send:
		return "send"
	}
	return "unknown"
}

// Buckets is the number of histogram buckets: bucket 0 holds durations under 1 µs, bucket i
// those in [2^(i-1), 2^i) µs, the last everything from about 1 s on.
const Buckets = 22

// Histogram counts durations in power-of-two buckets of microseconds. Observe is lock-free
// and does not allocate; Snapshot may run beside it (a snapshot taken during an Observe may
// count it in Count and not yet in a bucket, or the reverse).
type Histogram struct {
	buckets [Buckets]atomic.Uint64
	count   atomic.Uint64
	sum     atomic.Int64 // nanoseconds
}

// Observe adds one duration; a negative one (clocks read on different cores) counts as 0.
func (h *Histogram) Observe(d time.Duration) {
	d = max(d, 0)
	h.buckets[bucketOf(d)].Add(1)
	h.count.Add(1)
	h.sum.Add(int64(d))
}

func bucketOf(d time.Duration) int {
	us := uint64(d / time.Microsecond)
	return min(bits.Len64(us), Buckets-1)
}

// UpperBound is the largest duration bucket i holds (exclusive); the last bucket has none.
func UpperBound(i int) time.Duration {
	return time.Duration(uint64(1)<<i) * time.Microsecond
}

// Snapshot is a histogram's counts at one moment.
type Snapshot struct {
	Buckets [Buckets]uint64
	Count   uint64
	Sum     time.Duration
}

// Snapshot reads the histogram.
func (h *Histogram) Snapshot() Snapshot {
	var s Snapshot
	for i := range s.Buckets {
		s.Buckets[i] = h.buckets[i].Load()
	}
	s.Count = h.count.Load()
	s.Sum = time.Duration(h.sum.Load())
	return s
}

// Quantile estimates the q-quantile (0..1) as the upper bound of the bucket it falls in: at
// most twice the true value. Zero without observations.
func (s Snapshot) Quantile(q float64) time.Duration {
	var n uint64
	for _, c := range s.Buckets {
		n += c
	}
	if n == 0 {
		return 0
	}
	rank := uint64(q * float64(n))
	var seen uint64
	for i, c := range s.Buckets {
		seen += c
		if seen > rank || i == Buckets-1 {
			return UpperBound(i)
		}
	}
	return UpperBound(Buckets - 1)
}

// Timings are a node's histograms, one per stage, and the arrival stamps that the ingest
// stage is measured from. The zero value is ready; a nil *Timings records nothing.
type Timings struct {
	stages   [numStages]Histogram
	arrivals [arrivalSlots]arrival
}

// Observe adds d to stage s.
func (t *Timings) Observe(s Stage, d time.Duration) {
	if t == nil || s < 0 || s >= numStages {
		return
	}
	t.stages[s].Observe(d)
}

// Since adds the time from start to now to stage s.
func (t *Timings) Since(s Stage, start time.Time) {
	if t == nil {
		return
	}
	t.Observe(s, time.Since(start))
}

// Snapshot reads stage s's histogram.
func (t *Timings) Snapshot(s Stage) Snapshot {
	if t == nil || s < 0 || s >= numStages {
		return Snapshot{}
	}
	return t.stages[s].Snapshot()
}

// arrivalSlots is how many recent RTP arrivals are remembered, by sequence number: far more
// than a publisher's packets in flight between the socket and the fan-out.
const arrivalSlots = 1024

// arrival is one remembered datagram: key is its SSRC and sequence number (and 1<<48, so
// that an empty slot matches nothing), at when the edge read it (Unix nanoseconds). The
// writer stores at, then key; a reader loads key, at, then key again, and trusts at only if
// key did not change meanwhile.
type arrival struct {
	key atomic.Uint64
	at  atomic.Int64
}

func arrivalKey(ssrc uint32, seq uint16) uint64 { return 1<<48 | uint64(ssrc)<<16 | uint64(seq) }

// Arrived notes that the edge read an RTP datagram (SRTP: its header is in the clear) at now.
// Datagrams that are not RTP are ignored. It does not allocate.
func (t *Timings) Arrived(datagram []byte, now time.Time) {
	if t == nil || len(datagram) < 12 {
		return
	}
	// RTP by RFC 7983 (first byte 128-191), not RTCP (packet types 192-223 in the second).
	if b0, b1 := datagram[0], datagram[1]; b0 < 128 || b0 > 191 || (b1 >= 192 && b1 <= 223) {
		return
	}
	seq := uint16(datagram[2])<<8 | uint16(datagram[3])
	ssrc := uint32(datagram[8])<<24 | uint32(datagram[9])<<16 | uint32(datagram[10])<<8 | uint32(datagram[11])
	a := &t.arrivals[seq%arrivalSlots]
	a.key.Store(0) // readers of the old key see a change while at is replaced
	a.at.Store(now.UnixNano())
	a.key.Store(arrivalKey(ssrc, seq))
}

// Ingested adds the time since pkt's arrival (noted by Arrived) to the ingest stage; a packet
// whose arrival is not remembered (it did not come through the edge: another node's, an
// RTMP publisher's) is not counted.
func (t *Timings) Ingested(pkt []byte, now time.Time) {
	if t == nil || len(pkt) < 12 {
		return
	}
	seq := uint16(pkt[2])<<8 | uint16(pkt[3])
	ssrc := uint32(pkt[8])<<24 | uint32(pkt[9])<<16 | uint32(pkt[10])<<8 | uint32(pkt[11])
	key := arrivalKey(ssrc, seq)
	a := &t.arrivals[seq%arrivalSlots]
	if a.key.Load() != key {
		return
	}
	at := a.at.Load()
	if a.key.Load() != key {
		return
	}
	t.Observe(Ingest, now.Sub(time.Unix(0, at)))
}
