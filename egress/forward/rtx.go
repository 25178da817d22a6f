package forward

import (
	"encoding/binary"
	"strconv"
	"strings"

	"github.com/pion/webrtc/v4"
)

// rtxStream is a viewer's retransmission stream (RFC 4588), when it negotiated one: resent
// packets go out on their own SSRC and payload type, numbered in their own sequence, each
// carrying the original sequence number before its payload. The viewer then tells repairs
// from duplicates (SRTP replay protection drops a resend on the media SSRC of a packet that
// was only late) and its statistics count them apart.
type rtxStream struct {
	ssrc uint32
	pt   uint8
	seq  uint16
	buf  [maxPacket + 2]byte
}

// SetRTX makes o resend on the viewer's RTX stream: ssrc and payload type pt. Call it before
// the output is attached.
func (o *Output) SetRTX(ssrc uint32, pt uint8) {
	o.rtxStream = &rtxStream{ssrc: ssrc, pt: pt}
}

// bindRTX gives out the viewer's RTX stream when the viewer negotiated one for codec.
func bindRTX(out *Output, ctx webrtc.TrackLocalContext, codec webrtc.RTPCodecParameters) {
	ssrc := ctx.SSRCRetransmission()
	if ssrc == 0 {
		return
	}
	if pt, ok := RTXPayloadType(codec.PayloadType, ctx.CodecParameters()); ok {
		out.SetRTX(uint32(ssrc), uint8(pt))
	}
}

// RTXPayloadType finds the negotiated RTX payload type of primary among codecs ("apt=N" in
// its fmtp line); ok is false when the viewer negotiated none.
func RTXPayloadType(primary webrtc.PayloadType, codecs []webrtc.RTPCodecParameters) (webrtc.PayloadType, bool) {
	want := "apt=" + strconv.Itoa(int(primary))
	for _, c := range codecs {
		if strings.EqualFold(c.MimeType, webrtc.MimeTypeRTX) && strings.Contains(c.SDPFmtpLine, want) {
			for _, p := range strings.Split(c.SDPFmtpLine, ";") {
				if strings.TrimSpace(p) == want {
					return c.PayloadType, true
				}
			}
		}
	}
	return 0, false
}

// resend writes one retransmission (pkt: rewritten for the viewer) to o: wrapped in the RTX
// stream when the viewer has one, as it is otherwise. It runs on the viewer's RTCP reader,
// one call at a time per output (Fanout.Retransmit's rule), so the RTX stream needs no lock.
func (o *Output) resend(pkt []byte) (rtx bool, err error) {
	x := o.rtxStream
	if x == nil {
		_, err = o.w.Write(pkt)
		return false, err
	}
	n := rtxWrap(x, pkt)
	if n == 0 {
		return false, nil // not RTP: nothing to resend
	}
	_, err = o.w.Write(x.buf[:n])
	return true, err
}

// rtxWrap builds the RTX packet of pkt in x.buf and returns its length (0 for a packet too
// short to be RTP): the header with the RTX SSRC, payload type and next sequence number,
// then the original sequence number, then the original payload (padding included).
func rtxWrap(x *rtxStream, pkt []byte) int {
	if len(pkt) < MinHeader {
		return 0
	}
	hl := MinHeader + 4*int(pkt[0]&0x0f)
	if pkt[0]&0x10 != 0 {
		if len(pkt) < hl+4 {
			return 0
		}
		hl += 4 + 4*int(binary.BigEndian.Uint16(pkt[hl+2:hl+4]))
	}
	if len(pkt) < hl {
		return 0
	}
	copy(x.buf[:hl], pkt[:hl])
	x.buf[1] = pkt[1]&0x80 | x.pt&0x7f
	binary.BigEndian.PutUint16(x.buf[2:4], x.seq)
	x.seq++
	binary.BigEndian.PutUint32(x.buf[8:12], x.ssrc)
	copy(x.buf[hl:hl+2], pkt[2:4]) // the original sequence number
	n := copy(x.buf[hl+2:], pkt[hl:])
	return hl + 2 + n
}
