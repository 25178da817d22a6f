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
	if pkt[0]&0x10 != 0 {
		blankExtension(pkt)
	}
	binary.BigEndian.PutUint16(pkt[2:4], seq)
	binary.BigEndian.PutUint32(pkt[4:8], ts)
	binary.BigEndian.PutUint32(pkt[8:12], r.SSRC)
	return true
}

// RewriteHeader does what Rewrite does to a parsed header (the marker and CSRCs stay as
// they are; the extensions are dropped).
func (r *Rewriter) RewriteHeader(h *rtp.Header) {
	h.SequenceNumber, h.Timestamp = r.next(h.SequenceNumber, h.Timestamp, h.SSRC)
	h.PayloadType = r.PayloadType & 0x7f
	h.SSRC = r.SSRC
	h.Extension, h.Extensions = false, nil
}

// blankExtension turns every element of pkt's header extension into padding (RFC 8285
// 4.2 and 4.3: zero bytes are padding in both formats), in place. The publisher's extension
// ids are not the viewer's: a simulcast publisher's mid and rid would make a browser viewer
// route the packet to another m-line or drop it. Padding keeps the packet's length.
func blankExtension(pkt []byte) {
	off := MinHeader + 4*int(pkt[0]&0x0f)
	if len(pkt) < off+4 {
		return
	}
	end := off + 4 + 4*int(binary.BigEndian.Uint16(pkt[off+2:off+4]))
	if profile := binary.BigEndian.Uint16(pkt[off : off+2]); end > len(pkt) ||
		(profile != 0xbede && profile&0xfff0 != 0x1000) {
		return // not an RFC 8285 extension: not ours to understand
	}
	clear(pkt[off+4 : end])
}

// next maps a source packet's sequence number and timestamp onto the viewer's stream.
func (r *Rewriter) next(seq uint16, ts, ssrc uint32) (uint16, uint32) {
	first := !r.started
	if first {
		// The viewer's stream starts below 2^15 (the source's number with its top bit
		// cleared): SRTP receivers guess the rollover counter from the first packet they
		// decrypt (RFC 3711 3.3.1), so a stream that started near 65535 and wrapped before the
		// viewer's first packet got through (lost, or dropped before DTLS was up) would be
		// guessed one roll short and never decrypt again. libwebrtc starts its senders below
		// 2^15 for the same reason.
		r.started, r.srcSSRC = true, ssrc
		r.seqOffset = -(seq & 0x8000)
	} else if ssrc != r.srcSSRC {
		// New source (a publisher that reconnected, or another simulcast layer at its key
		// frame): continue after the last packet sent, one frame of 90 kHz later, enough for
		// decoders to treat it as a new frame. The viewer sees no gap in sequence numbers.
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
