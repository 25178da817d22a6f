package loadgen

import (
	"time"

	"github.com/pion/rtcp"
)

// Pure cores of the lite viewer: datagram classification, NACK gap bookkeeping and receiver
// report statistics. They take `now` (Unix nanoseconds) as an argument and do not allocate on
// the per-packet path.

// datagramKind is what a datagram on a viewer's 5-tuple is (RFC 7983 demultiplexing).
type datagramKind uint8

const (
	kindOther datagramKind = iota
	kindSTUN
	kindDTLS
	kindRTP
	kindRTCP
)

// classify tells STUN, DTLS, RTP and RTCP apart by the first byte (and for RTP/RTCP the
// second: RTCP packet types 192-223 sit where RTP's marker bit and payload type are).
func classify(b []byte) datagramKind {
	if len(b) == 0 {
		return kindOther
	}
	switch c := b[0]; {
	case c <= 3:
		return kindSTUN
	case c >= 20 && c <= 63:
		return kindDTLS
	case c >= 128 && c <= 191:
		if len(b) >= 2 && b[1] >= 192 && b[1] <= 223 {
			return kindRTCP
		}
		return kindRTP
	}
	return kindOther
}

// NACK timing: ask as soon as a gap is seen, again every nackRetry, at most nackTries times,
// and forget a gap after nackForget.
const (
	nackRetry   = 20 * time.Millisecond
	nackTries   = 3
	nackForget  = time.Second
	nackMaxGap  = 512 // a jump larger than this is a restart, not loss
	nackMaxKept = 1024
)

type nackEntry struct {
	seq         uint16
	tries       uint8
	since, next int64
}

// nackTracker finds the RTP sequence numbers one media SSRC is missing and says when to ask
// for them.
type nackTracker struct {
	started bool
	highest uint16
	missing []nackEntry
}

// received accounts one packet's RTP sequence number; true when it opened a gap.
func (t *nackTracker) received(seq uint16, now int64) (gap bool) {
	if !t.started {
		t.started, t.highest = true, seq
		return false
	}
	diff := int16(seq - t.highest)
	switch {
	case diff > 0 && int(diff) <= nackMaxGap:
		for s := t.highest + 1; s != seq; s++ {
			if len(t.missing) >= nackMaxKept {
				break
			}
			t.missing = append(t.missing, nackEntry{seq: s, since: now, next: now})
			gap = true
		}
		t.highest = seq
	case diff > 0:
		t.missing, t.highest = t.missing[:0], seq
	default:
		// Late or retransmitted: no longer missing.
		for i := range t.missing {
			if t.missing[i].seq == seq {
				t.missing = append(t.missing[:i], t.missing[i+1:]...)
				break
			}
		}
	}
	return gap
}

// pending reports whether any gap may be due at now.
func (t *nackTracker) pending() bool { return len(t.missing) > 0 }

// due appends to out the sequence numbers to ask for at now, counting the tries, and forgets
// gaps asked for nackTries times or older than nackForget.
func (t *nackTracker) due(now int64, out []uint16) []uint16 {
	kept := t.missing[:0]
	for _, e := range t.missing {
		if e.tries >= nackTries || now-e.since > int64(nackForget) {
			continue
		}
		if now >= e.next {
			out = append(out, e.seq)
			e.tries++
			e.next = now + int64(nackRetry)
		}
		kept = append(kept, e)
	}
	t.missing = kept
	return out
}

// rrStats are the figures of one media SSRC's reception report (RFC 3550 A.3, A.8).
type rrStats struct {
	started                      bool
	baseSeq, maxSeq              uint16
	cycles                       uint32
	received                     uint32
	expectedPrior, receivedPrior uint32
	jitter                       float64 // in RTP clock units
	lastTransit                  int64
	haveTransit                  bool
}

// add accounts one packet; arrival is its arrival time in the track's RTP clock units.
func (r *rrStats) add(seq uint16, ts uint32, arrival int64) {
	if !r.started {
		r.started, r.baseSeq, r.maxSeq = true, seq, seq
	} else if d := int16(seq - r.maxSeq); d > 0 {
		if seq < r.maxSeq {
			r.cycles += 1 << 16
		}
		r.maxSeq = seq
	}
	r.received++
	transit := arrival - int64(ts)
	if r.haveTransit {
		d := transit - r.lastTransit
		if d < 0 {
			d = -d
		}
		r.jitter += (float64(d) - r.jitter) / 16
	}
	r.lastTransit, r.haveTransit = transit, true
}

// report is the reception report block for ssrc, and starts the next interval.
func (r *rrStats) report(ssrc uint32) rtcp.ReceptionReport {
	extMax := r.cycles | uint32(r.maxSeq)
	expected := extMax - uint32(r.baseSeq) + 1
	lost := int64(expected) - int64(r.received)
	expInterval := expected - r.expectedPrior
	recvInterval := r.received - r.receivedPrior
	r.expectedPrior, r.receivedPrior = expected, r.received
	var fraction uint8
	if lostInterval := int64(expInterval) - int64(recvInterval); expInterval > 0 && lostInterval > 0 {
		fraction = uint8(lostInterval << 8 / int64(expInterval))
	}
	lost = min(max(lost, 0), 0x7fffff)
	return rtcp.ReceptionReport{SSRC: ssrc, FractionLost: fraction, TotalLost: uint32(lost),
		LastSequenceNumber: extMax, Jitter: uint32(r.jitter)}
}
