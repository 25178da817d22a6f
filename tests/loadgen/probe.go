package loadgen

import (
	"encoding/binary"
	"errors"
)

// A probe is the start of every payload the tool sends, after two bytes left for the codec's
// own header (the VP8 payload descriptor and the first byte of the VP8 frame header, so the
// server and any tap see plausible VP8):
//
//	[0]      VP8 payload descriptor (0x10: start of a partition, on a frame's first packet)
//	[1]      VP8 frame header byte (bit 0 clear: keyframe)
//	[2:6]    "JMLD"
//	[6:14]   send time, Unix nanoseconds, big endian
//	[14:18]  the track's probe sequence number, big endian (0, 1, 2... never rewritten)
const (
	probeOffset = 2
	probeSize   = probeOffset + 16
)

var probeMagic = [4]byte{'J', 'M', 'L', 'D'}

// putProbe writes the probe into payload, which must hold probeSize bytes.
func putProbe(payload []byte, sentNanos int64, seq uint32) {
	copy(payload[probeOffset:], probeMagic[:])
	binary.BigEndian.PutUint64(payload[probeOffset+4:], uint64(sentNanos))
	binary.BigEndian.PutUint32(payload[probeOffset+12:], seq)
}

// readProbe reads the probe of a received payload.
func readProbe(payload []byte) (sentNanos int64, seq uint32, ok bool) {
	if len(payload) < probeSize || [4]byte(payload[probeOffset:probeOffset+4]) != probeMagic {
		return 0, 0, false
	}
	return int64(binary.BigEndian.Uint64(payload[probeOffset+4:])), binary.BigEndian.Uint32(payload[probeOffset+12:]), true
}

var errNotRTP = errors.New("load: not an RTP packet")

// rtpPayload returns the payload of a whole RTP packet: after the CSRCs and any header
// extension (a server may add its own, e.g. transport-wide sequence numbers), before padding.
// It does not allocate.
func rtpPayload(pkt []byte) ([]byte, error) {
	if len(pkt) < 12 || pkt[0]>>6 != 2 {
		return nil, errNotRTP
	}
	off := 12 + 4*int(pkt[0]&0x0f)
	if pkt[0]&0x10 != 0 {
		if len(pkt) < off+4 {
			return nil, errNotRTP
		}
		off += 4 + 4*int(binary.BigEndian.Uint16(pkt[off+2:]))
	}
	end := len(pkt)
	if pkt[0]&0x20 != 0 && end > 0 {
		end -= int(pkt[end-1])
	}
	if off > end {
		return nil, errNotRTP
	}
	return pkt[off:end], nil
}
