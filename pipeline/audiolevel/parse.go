package audiolevel

import "encoding/binary"

// URI names the audio-level header extension in SDP (RFC 6464).
const URI = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"

// Silence is the level of a packet with no sound (-127 dBov).
const Silence = 127

// Parse reads the audio level carried in extension id of the raw RTP packet pkt: level is
// -dBov (0 loudest, 127 silence), voice the sender's voice-activity flag. ok is false when the
// packet has no such extension or is malformed; Parse never reads past pkt and never
// allocates (it runs for every audio packet a node receives).
func Parse(pkt []byte, id uint8) (level uint8, voice bool, ok bool) {
	if id == 0 || len(pkt) < 12 || pkt[0]>>6 != 2 || pkt[0]&0x10 == 0 {
		return 0, false, false
	}
	off := 12 + 4*int(pkt[0]&0x0f)
	if off+4 > len(pkt) {
		return 0, false, false
	}
	profile := binary.BigEndian.Uint16(pkt[off:])
	end := off + 4 + 4*int(binary.BigEndian.Uint16(pkt[off+2:]))
	if end > len(pkt) {
		return 0, false, false
	}
	ext := pkt[off+4 : end]
	switch {
	case profile == 0xBEDE: // RFC 8285 one-byte header
		return oneByte(ext, id)
	case profile&0xFFF0 == 0x1000: // two-byte header
		return twoByte(ext, id)
	}
	return 0, false, false
}

func oneByte(ext []byte, id uint8) (uint8, bool, bool) {
	for i := 0; i < len(ext); {
		b := ext[i]
		if b == 0 { // padding
			i++
			continue
		}
		eid, n := b>>4, int(b&0x0f)+1
		if eid == 15 { // reserved: stop
			break
		}
		if i+1+n > len(ext) {
			break
		}
		if eid == id {
			return ext[i+1] & 0x7f, ext[i+1]&0x80 != 0, true
		}
		i += 1 + n
	}
	return 0, false, false
}

func twoByte(ext []byte, id uint8) (uint8, bool, bool) {
	for i := 0; i < len(ext); {
		if ext[i] == 0 { // padding
			i++
			continue
		}
		if i+2 > len(ext) {
			break
		}
		eid, n := ext[i], int(ext[i+1])
		if i+2+n > len(ext) {
			break
		}
		if eid == id && n >= 1 {
			return ext[i+2] & 0x7f, ext[i+2]&0x80 != 0, true
		}
		i += 2 + n
	}
	return 0, false, false
}
