package rtcclient

import (
	"strings"

	"github.com/pion/webrtc/v4"
)

// H.264 NAL unit types (RFC 6184) that matter here.
const (
	naluIDR  = 5
	naluSPS  = 7
	naluSTAP = 24 // STAP-A: several NAL units in one packet
	naluFU   = 28 // FU-A: one NAL unit over several packets
)

// StartsKeyFrame reports whether an RTP payload of codec (a MIME type, e.g. video/VP8)
// begins a key frame: a VP8 intra frame's first partition, or an H.264 IDR picture or the
// SPS sent ahead of it. Other codecs report false.
func StartsKeyFrame(mime string, payload []byte) bool {
	switch {
	case strings.EqualFold(mime, webrtc.MimeTypeVP8):
		return vp8KeyFrame(payload)
	case strings.EqualFold(mime, webrtc.MimeTypeH264):
		return h264KeyFrame(payload)
	}
	return false
}

// vp8KeyFrame reads the payload descriptor (RFC 7741 4.2) and, at the start of partition 0,
// the frame header's inverse key frame flag.
func vp8KeyFrame(p []byte) bool {
	if len(p) < 1 {
		return false
	}
	start, pid := p[0]&0x10 != 0, p[0]&0x07
	i := 1
	if p[0]&0x80 != 0 { // X: extension byte
		if len(p) < 2 {
			return false
		}
		x := p[1]
		i = 2
		if x&0x80 != 0 { // I: picture ID, 7 or 15 bits
			if len(p) <= i {
				return false
			}
			if p[i]&0x80 != 0 {
				i++
			}
			i++
		}
		if x&0x40 != 0 { // L: TL0PICIDX
			i++
		}
		if x&0x30 != 0 { // T or K: TID/KEYIDX
			i++
		}
	}
	if !start || pid != 0 || len(p) <= i {
		return false
	}
	return p[i]&0x01 == 0
}

// h264KeyFrame looks for an IDR slice or an SPS in a single NAL unit packet, among the
// units of a STAP-A, or at the start of an FU-A.
func h264KeyFrame(p []byte) bool {
	if len(p) < 1 {
		return false
	}
	switch t := p[0] & 0x1f; t {
	case naluIDR, naluSPS:
		return true
	case naluSTAP:
		for i := 1; i+2 < len(p); {
			n := int(p[i])<<8 | int(p[i+1])
			if n == 0 || i+2+n > len(p) {
				return false
			}
			if u := p[i+2] & 0x1f; u == naluIDR || u == naluSPS {
				return true
			}
			i += 2 + n
		}
	case naluFU:
		return len(p) > 1 && p[1]&0x80 != 0 && p[1]&0x1f == naluIDR
	}
	return false
}
