package forward

import "strings"

// KeyframeStart returns the test for the first packet of a key frame of the codec (a MIME
// type such as "video/VP8"), or nil for a codec it does not know (audio, VP9, AV1): a viewer
// of such a track is started with whatever packet comes next, as before.
func KeyframeStart(mime string) func(pkt []byte) bool {
	switch strings.ToLower(mime) {
	case "video/vp8":
		return vp8KeyframeStart
	case "video/h264":
		return h264KeyframeStart
	}
	return nil
}

// PayloadStartsKeyframe reports whether an RTP payload (header already removed) of codec (a
// MIME type) begins a key frame; false for codecs KeyframeStart does not know.
func PayloadStartsKeyframe(mime string, payload []byte) bool {
	switch strings.ToLower(mime) {
	case "video/vp8":
		return vp8KeyPayload(payload)
	case "video/h264":
		return h264KeyPayload(payload)
	}
	return false
}

// rtpPayload is the payload of an RTP packet (header, CSRCs and extension skipped), or nil.
func rtpPayload(pkt []byte) []byte {
	if len(pkt) < MinHeader || pkt[0]>>6 != 2 {
		return nil
	}
	n := MinHeader + 4*int(pkt[0]&0x0f)
	if pkt[0]&0x10 != 0 { // extension: 4 bytes of profile and length, then length words
		if len(pkt) < n+4 {
			return nil
		}
		n += 4 + 4*(int(pkt[n+2])<<8|int(pkt[n+3]))
	}
	end := len(pkt)
	if pkt[0]&0x20 != 0 { // padding: its size is the last byte
		if end == 0 || int(pkt[end-1]) > end-n {
			return nil
		}
		end -= int(pkt[end-1])
	}
	if n >= end {
		return nil
	}
	return pkt[n:end]
}

// vp8KeyframeStart: the payload descriptor (RFC 7741) starts partition 0 of a frame (S=1,
// PID=0) and the frame header's P bit is 0 (a key frame).
func vp8KeyframeStart(pkt []byte) bool { return vp8KeyPayload(rtpPayload(pkt)) }

// vp8KeyPayload is vp8KeyframeStart on the packet's payload.
func vp8KeyPayload(p []byte) bool {
	if len(p) < 1 || p[0]&0x10 == 0 || p[0]&0x07 != 0 {
		return false
	}
	i := 1
	if p[0]&0x80 != 0 { // X: extension byte with I, L, T, K
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
				i++
			}
			i++
		}
		if x&0x40 != 0 { // L: TL0PICIDX
			i++
		}
		if x&0x30 != 0 { // T or K: TID/Y/KEYIDX
			i++
		}
	}
	return len(p) > i && p[i]&0x01 == 0
}

// NAL unit types of H.264 (RFC 6184) that start a decodable picture, and the aggregates.
const (
	h264IDR  = 5
	h264SPS  = 7
	h264STAP = 24
	h264FUA  = 28
)

// h264KeyframeStart: the packet carries an SPS or starts an IDR slice (alone, in a STAP-A, or
// as the first fragment of an FU-A).
func h264KeyframeStart(pkt []byte) bool { return h264KeyPayload(rtpPayload(pkt)) }

// h264KeyPayload is h264KeyframeStart on the packet's payload.
func h264KeyPayload(p []byte) bool {
	if len(p) < 1 {
		return false
	}
	switch t := p[0] & 0x1f; t {
	case h264IDR, h264SPS:
		return true
	case h264STAP:
		for i := 1; i+2 < len(p); {
			size := int(p[i])<<8 | int(p[i+1])
			if size == 0 || i+2+size > len(p) {
				return false
			}
			if nt := p[i+2] & 0x1f; nt == h264IDR || nt == h264SPS {
				return true
			}
			i += 2 + size
		}
	case h264FUA:
		if len(p) < 2 || p[1]&0x80 == 0 { // S: the first fragment
			return false
		}
		nt := p[1] & 0x1f
		return nt == h264IDR || nt == h264SPS
	}
	return false
}

// SwitchPoint reports whether pkt (a whole RTP packet of codec, a MIME type) is where a
// viewer may move to this stream and decode at once: the first packet of a key frame for
// VP8 and H.264; for a codec KeyframeStart does not know every packet qualifies (the
// switch then relies on the key frame requested with it).
func SwitchPoint(codec string, pkt []byte) bool {
	if isKey := KeyframeStart(codec); isKey != nil {
		return isKey(pkt)
	}
	return true
}
