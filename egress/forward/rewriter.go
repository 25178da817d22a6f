package forward

import (
	"encoding/binary"

	"github.com/pion/rtp"
)

// MinHeader is the fixed RTP header size.
const MinHeader = 12

// Rewriter maps one source's RTP onto one viewer's outgoing stream: the viewer's SSRC and
// payload type, and sequence numbers and timestamps that stay continuous when the source
// changes (a publisher that reconnects starts a new SSRC with random sequence and timestamp).
// It rewrites headers in place and keeps no packets.
type Rewriter struct {
	SSRC        uint32
	PayloadType uint8

	started   bool
	srcSSRC   uint32
	seqOffset uint16
	tsOffset  uint32
	lastSeq   uint16 // last outgoing sequence number
	lastTS    uint32 // last outgoing timestamp
}

// Rewrite rewrites pkt (a whole RTP packet) in place. It returns false for a packet too short
// or not RTP version 2, which must be dropped.
func (r *Rewriter) Rewrite(pkt []byte) bool {
	if len(pkt) < MinHeader || pkt[0]>>6 != 2 {
		return false
	}
	seq, ts := r.next(binary.BigEndian.Uint16(pkt[2:4]), binary.BigEndian.Uint32(pkt[4:8]), binary.BigEndian.Uint32(pkt[8:12]))
	pkt[1] = pkt[1]&0x80 | r.PayloadType&0x7f
	binary.BigEndian.PutUint16(pkt[2:4], seq)
	binary.BigEndian.PutUint32(pkt[4:8], ts)
	binary.BigEndian.PutUint32(pkt[8:12], r.SSRC)
	return true
}

// RewriteHeader does what Rewrite does to a parsed header (the marker, extensions and CSRCs
// stay as they are).
func (r *Rewriter) RewriteHeader(h *rtp.Header) {
	h.SequenceNumber, h.Timestamp = r.next(h.SequenceNumber, h.Timestamp, h.SSRC)
	h.PayloadType = r.PayloadType & 0x7f
	h.SSRC = r.SSRC
}

// next maps a source packet's sequence number and timestamp onto the viewer's stream.
func (r *Rewriter) next(seq uint16, ts, ssrc uint32) (uint16, uint32) {
	first := !r.started
	if first {
		r.started, r.srcSSRC = true, ssrc
	} else if ssrc != r.srcSSRC {
		// New source: continue after the last packet sent (one frame of 90 kHz later, enough
		// for decoders to treat it as a new frame).
		r.srcSSRC = ssrc
		r.seqOffset = r.lastSeq + 1 - seq
		r.tsOffset = r.lastTS + 3000 - ts
	}
	outSeq := seq + r.seqOffset
	outTS := ts + r.tsOffset
	if first || int16(outSeq-r.lastSeq) > 0 {
		r.lastSeq, r.lastTS = outSeq, outTS
	}
	return outSeq, outTS
}

// SourceSeq maps an outgoing sequence number (from a viewer's NACK) back to the source's, and
// whether the current source can have sent it.
func (r *Rewriter) SourceSeq(out uint16) (uint16, bool) {
	if !r.started {
		return 0, false
	}
	return out - r.seqOffset, true
}

// Source is the SSRC of the source currently forwarded.
func (r *Rewriter) Source() uint32 { return r.srcSSRC }
