package rtmp

import (
	"fmt"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
)

// H.264 NAL unit types the packetizer looks at (ITU-T H.264 table 7-1).
const (
	naluIDR = 5
	naluSPS = 7
	naluPPS = 8
	naluAUD = 9
)

// H264 codec constants of the published track.
const (
	H264Codec     = "video/H264"
	H264ClockRate = 90000
	// h264PayloadType is what the RTP on the media subject carries; viewers' forwarders
	// rewrite it to each viewer's negotiated type.
	h264PayloadType = 102
	// mtu is the largest RTP payload: FU-A fragments stay well under a 1500-byte path with
	// SRTP, IP and UDP overhead, as pion's own senders do.
	mtu = 1200
)

// H264Fmtp is the fmtp line of a track whose SPS is sps: packetization mode 1 (what the
// packetizer sends), the profile and level from the SPS, and level-asymmetry-allowed so a
// browser whose own level differs still accepts it. ok is false when sps is too short.
func H264Fmtp(sps []byte) (fmtp string, ok bool) {
	if len(sps) < 4 || sps[0]&0x1f != naluSPS {
		return "", false
	}
	return fmt.Sprintf("level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=%02x%02x%02x", sps[1], sps[2], sps[3]), true
}

// Packetizer turns H.264 access units (the NAL units of one frame, as FLV carries them) into
// RTP packets without re-encoding: SPS and PPS go before every key frame (in one STAP-A), big
// NAL units are split in FU-A fragments, the marker bit ends each frame, timestamps are the
// frame's presentation time at 90 kHz. Not safe for concurrent use; one per track.
type Packetizer struct {
	ssrc     uint32
	seq      uint16
	base     uint32
	sps, pps []byte
	pay      codecs.H264Payloader
	nalus    [][]byte // scratch
}

// NewPacketizer starts a packetizer with the stream's parameter sets (nil if unknown yet:
// key frames that carry their own are sent with those) and random-looking ssrc, first
// sequence number and timestamp base.
func NewPacketizer(sps, pps []byte, ssrc uint32, seq uint16, base uint32) *Packetizer {
	return &Packetizer{ssrc: ssrc, seq: seq, base: base, sps: clone(sps), pps: clone(pps)}
}

func clone(b []byte) []byte { return append([]byte(nil), b...) }

// SPS is the latest sequence parameter set seen.
func (p *Packetizer) SPS() []byte { return p.sps }

// Packetize returns the RTP packets of one access unit presented at pts (FLV DTS + CTS) and
// whether it is a key frame (has an IDR slice). An access unit of parameter sets only (a new
// AVC sequence header) updates them and sends nothing.
func (p *Packetizer) Packetize(pts time.Duration, au [][]byte) (pkts [][]byte, key bool) {
	p.nalus = p.nalus[:0]
	for _, n := range au {
		if len(n) == 0 {
			continue
		}
		switch n[0] & 0x1f {
		case naluSPS:
			p.sps = clone(n)
		case naluPPS:
			p.pps = clone(n)
		case naluAUD:
		case naluIDR:
			key = true
			p.nalus = append(p.nalus, n)
		default:
			p.nalus = append(p.nalus, n)
		}
	}
	if len(p.nalus) == 0 {
		return nil, false
	}
	var payloads [][]byte
	if key && p.sps != nil && p.pps != nil {
		// The payloader keeps SPS and PPS and sends them as one STAP-A ahead of the next NAL unit.
		payloads = append(payloads, p.pay.Payload(mtu, p.sps)...)
		payloads = append(payloads, p.pay.Payload(mtu, p.pps)...)
	}
	for _, n := range p.nalus {
		payloads = append(payloads, p.pay.Payload(mtu, n)...)
	}
	// In microseconds first: pts*90000 in nanoseconds would overflow after 28 hours.
	ts := p.base + uint32(pts.Microseconds()*H264ClockRate/1e6)
	pkts = make([][]byte, 0, len(payloads))
	for i, pl := range payloads {
		h := rtp.Header{Version: 2, PayloadType: h264PayloadType, SequenceNumber: p.seq, Timestamp: ts,
			SSRC: p.ssrc, Marker: i == len(payloads)-1}
		p.seq++
		pkt, err := (&rtp.Packet{Header: h, Payload: pl}).Marshal()
		if err != nil {
			continue // a header without extensions always marshals
		}
		pkts = append(pkts, pkt)
	}
	return pkts, key
}
