package bwe

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// ErrFeedback is returned for a transport-wide feedback message that is not well formed.
var ErrFeedback = errors.New("bwe: malformed transport-wide feedback")

// RTCP packet type and format of transport-wide feedback (RTPFB, FMT 15).
const (
	rtpfb         = 205
	transportCCFB = 15
	fbFixedLen    = 20 // RTCP header, sender and media SSRC, base, count, reference time, count
)

// Symbols of a packet's status.
const (
	symNotReceived = 0
	symSmallDelta  = 1
	symLargeDelta  = 2
)

// DeltaUnit is the resolution of receive deltas.
const DeltaUnit = 250 // µs

// Feedback is one transport-wide feedback message, read in place: its chunks and receive
// deltas stay slices of the packet it was parsed from.
type Feedback struct {
	// Base is the transport-wide sequence number of the first packet reported; Count how
	// many consecutive packets are reported.
	Base, Count uint16
	// RefTime is the receiver's reference time in 64 ms units (24 bits, wrapping).
	RefTime uint32
	// FbCount counts the feedback messages the receiver sent (8 bits, wrapping).
	FbCount uint8

	chunks, deltas []byte
}

// IsFeedback reports whether pkt, one RTCP packet, is transport-wide feedback.
func IsFeedback(pkt []byte) bool {
	return len(pkt) >= 2 && pkt[0]>>6 == 2 && pkt[1] == rtpfb && pkt[0]&0x1f == transportCCFB
}

// ParseFeedback reads one transport-wide feedback packet (its RTCP header first; trailing
// bytes beyond the header's length, and padding, are ignored). It allocates nothing; the
// Feedback refers to pkt.
func ParseFeedback(pkt []byte) (Feedback, error) {
	if !IsFeedback(pkt) {
		return Feedback{}, fmt.Errorf("%w: not RTPFB/15", ErrFeedback)
	}
	n := 4 * (int(binary.BigEndian.Uint16(pkt[2:4])) + 1)
	if n < fbFixedLen || n > len(pkt) {
		return Feedback{}, fmt.Errorf("%w: length %d of %d bytes", ErrFeedback, n, len(pkt))
	}
	b := pkt[:n]
	if b[0]&0x20 != 0 { // padding: its count is the last byte
		p := int(b[n-1])
		if p == 0 || n-p < fbFixedLen {
			return Feedback{}, fmt.Errorf("%w: padding %d", ErrFeedback, p)
		}
		b = b[:n-p]
	}
	f := Feedback{
		Base:    binary.BigEndian.Uint16(b[12:14]),
		Count:   binary.BigEndian.Uint16(b[14:16]),
		RefTime: uint32(b[16])<<16 | uint32(b[17])<<8 | uint32(b[18]),
		FbCount: b[19],
	}
	pos, deltaBytes := fbFixedLen, 0
	for left := int(f.Count); left > 0; {
		if pos+2 > len(b) {
			return Feedback{}, fmt.Errorf("%w: %d statuses missing", ErrFeedback, left)
		}
		c := binary.BigEndian.Uint16(b[pos : pos+2])
		pos += 2
		k := min(chunkLen(c), left)
		for i := range k {
			deltaBytes += deltaSize(symbol(c, i))
		}
		left -= k
	}
	if pos+deltaBytes > len(b) {
		return Feedback{}, fmt.Errorf("%w: %d bytes of receive deltas, %d left", ErrFeedback, deltaBytes, len(b)-pos)
	}
	f.chunks, f.deltas = b[fbFixedLen:pos], b[pos:pos+deltaBytes]
	return f, nil
}

// chunkLen is how many statuses chunk c holds.
func chunkLen(c uint16) int {
	switch {
	case c&0x8000 == 0:
		return int(c & 0x1fff) // run length
	case c&0x4000 == 0:
		return 14 // one-bit symbols
	default:
		return 7 // two-bit symbols
	}
}

// symbol is the i-th status of chunk c.
func symbol(c uint16, i int) int {
	switch {
	case c&0x8000 == 0:
		return int(c>>13) & 3
	case c&0x4000 == 0:
		return int(c>>(13-i)) & 1
	default:
		return int(c>>(12-2*i)) & 3
	}
}

// deltaSize is the bytes of receive delta a status carries.
func deltaSize(sym int) int {
	switch sym {
	case symSmallDelta:
		return 1
	case symLargeDelta:
		return 2
	}
	return 0 // not received, or the reserved symbol (no delta, treated as not received)
}

// Packet is one packet's status in a feedback.
type Packet struct {
	Seq      uint16
	Received bool
	// Delta is the receive time since the previous received packet of the feedback (for
	// the first: since the reference time), in µs; may be negative (reordering).
	Delta int32
}

// Packets is a cursor over a feedback's packet statuses, in sequence order.
type Packets struct {
	chunks, deltas []byte
	seq            uint16
	left           int
	chunk          uint16
	at, n          int // position in the current chunk, and its statuses
}

// Packets returns a cursor at the feedback's first packet.
func (f *Feedback) Packets() Packets {
	return Packets{chunks: f.chunks, deltas: f.deltas, seq: f.Base, left: int(f.Count)}
}

// Next returns the next packet's status; ok is false after the last one.
func (p *Packets) Next() (pkt Packet, ok bool) {
	for p.at == p.n {
		if p.left == 0 || len(p.chunks) < 2 {
			return Packet{}, false
		}
		p.chunk = binary.BigEndian.Uint16(p.chunks)
		p.chunks = p.chunks[2:]
		p.at, p.n = 0, min(chunkLen(p.chunk), p.left)
	}
	sym := symbol(p.chunk, p.at)
	p.at++
	p.left--
	pkt.Seq = p.seq
	p.seq++
	switch sym {
	case symSmallDelta:
		pkt.Received, pkt.Delta = true, int32(p.deltas[0])*DeltaUnit
		p.deltas = p.deltas[1:]
	case symLargeDelta:
		pkt.Received, pkt.Delta = true, int32(int16(binary.BigEndian.Uint16(p.deltas)))*DeltaUnit
		p.deltas = p.deltas[2:]
	}
	return pkt, true
}

// EachFeedback calls fn with every transport-wide feedback packet of a compound RTCP packet
// (well formed or not: fn parses it); other packets are skipped. It stops at the first
// header whose length does not fit.
func EachFeedback(compound []byte, fn func(pkt []byte)) {
	for len(compound) >= 4 {
		n := 4 * (int(binary.BigEndian.Uint16(compound[2:4])) + 1)
		if n > len(compound) {
			return
		}
		if IsFeedback(compound) {
			fn(compound[:n])
		}
		compound = compound[n:]
	}
}
