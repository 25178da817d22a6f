package forward

import (
	"encoding/binary"
	"strings"
)

// payloadOf returns the payload of a whole RTP packet (after CSRCs and header extension,
// before padding), or nil when the packet is malformed.
func payloadOf(pkt []byte) []byte {
	if len(pkt) < MinHeader || pkt[0]>>6 != 2 {
		return nil
	}
	off := MinHeader + 4*int(pkt[0]&0x0f)
	if pkt[0]&0x10 != 0 {
		if len(pkt) < off+4 {
			return nil
		}
		off += 4 + 4*int(binary.BigEndian.Uint16(pkt[off+2:off+4]))
	}
	end := len(pkt)
	if pkt[0]&0x20 != 0 && end > off {
		end -= int(pkt[end-1])
	}
	if off >= end {
		return nil
	}
	return pkt[off:end]
}

// KeyframeStart reports whether pkt (a whole RTP packet of codec, a MIME type) is the first
// packet of a key frame: where a viewer may switch to this stream and decode at once. It
// knows VP8 and H.264; for other codecs every packet qualifies (the switch then relies on
// the key frame requested with it).
func KeyframeStart(codec string, pkt []byte) bool {
	p := payloadOf(pkt)
	if p == nil {
		return false
	}
	switch {
	case strings.EqualFold(codec, "video/VP8"):
		return vp8KeyframeStart(p)
	case strings.EqualFold(codec, "video/H264"):
		return h264KeyframeStart(p)
	}
	return true
}

// vp8KeyframeStart reads the VP8 payload descriptor (RFC 7741 4.2) and the frame header's
// P bit (0: key frame) of a partition's start.
func vp8KeyframeStart(p []byte) bool {
	if len(p) < 1 {
		return false
	}
	s, pid := p[0]&0x10 != 0, p[0]&0x07
	if !s || pid != 0 {
		return false
	}
	i := 1
	if p[0]&0x80 != 0 { // X: extension byte follows
		if len(p) < 2 {
			return false
		}
		x := p[1]
		i = 2
		if x&0x80 != 0 { // I: picture id, 7 or 15 bits
			if len(p) <= i {
				return false
			}
			if p[i]&0x80 != 0 {
				i += 2
			} else {
				i++
			}
		}
		if x&0x40 != 0 { // L: TL0PICIDX
			i++
		}
		if x&0x30 != 0 { // T or K: TID/KEYIDX byte
			i++
		}
	}
	return len(p) > i && p[i]&0x01 == 0
}

// h264KeyframeStart finds an SPS or the start of an IDR slice (RFC 6184): a single NAL unit,
// inside a STAP-A, or an FU-A's first fragment.
func h264KeyframeStart(p []byte) bool {
	key := func(t byte) bool { return t == 5 || t == 7 }
	switch t := p[0] & 0x1f; {
	case t >= 1 && t <= 23:
		return key(t)
	case t == 24: // STAP-A: 16-bit sizes, then NAL units
		for i := 1; i+2 < len(p); {
			n := int(binary.BigEndian.Uint16(p[i:]))
			if n == 0 || i+2+n > len(p) {
				return false
			}
			if key(p[i+2] & 0x1f) {
				return true
			}
			i += 2 + n
		}
	case t == 28: // FU-A
		return len(p) > 1 && p[1]&0x80 != 0 && key(p[1]&0x1f)
	}
	return false
}
