package forward

import (
	"encoding/binary"
	"testing"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
	"github.com/stretchr/testify/require"
)

// TestRetransmitOnRTXStream: a viewer with an RTX stream gets its repairs on the RTX SSRC
// and payload type, numbered in their own sequence, the original sequence number first in
// the payload (RFC 4588 4.); the live stream is untouched.
func TestRetransmitOnRTXStream(t *testing.T) {
	var f Fanout
	col := &collector{}
	o := NewOutput(1000, 96, col)
	o.SetRTX(2000, 97)
	f.add(o)
	for seq := uint16(10); seq < 20; seq++ {
		f.Forward(rtpPacket(t, 7, seq, "frame"))
	}
	live := col.got()
	require.Len(t, live, 10)
	require.Equal(t, 2, f.Retransmit(o, []uint16{live[3].SequenceNumber, live[5].SequenceNumber}))
	got := col.got()[10:]
	require.Len(t, got, 2)
	for i, want := range []rtp.Packet{live[3], live[5]} {
		require.Equal(t, uint32(2000), got[i].SSRC)
		require.Equal(t, uint8(97), got[i].PayloadType)
		require.Equal(t, uint16(i), got[i].SequenceNumber, "the RTX stream's own numbering")
		require.Equal(t, want.Timestamp, got[i].Timestamp)
		require.Equal(t, want.SequenceNumber, binary.BigEndian.Uint16(got[i].Payload[:2]), "original sequence number")
		require.Equal(t, want.Payload, got[i].Payload[2:])
	}
	st := f.Counters()
	require.EqualValues(t, 2, st.Retransmitted)
	require.EqualValues(t, 2, st.RetransmittedRTX)
}

func TestRTXWrapKeepsExtensionsAndRefusesShort(t *testing.T) {
	p := rtp.Packet{Header: rtp.Header{Version: 2, Extension: true, ExtensionProfile: 0xbede, SequenceNumber: 77,
		Timestamp: 9, SSRC: 5, PayloadType: 96, CSRC: []uint32{42}}, Payload: []byte("payload")}
	require.NoError(t, p.SetExtension(3, []byte{1, 2}))
	b, err := p.Marshal()
	require.NoError(t, err)
	x := &rtxStream{ssrc: 8, pt: 97, seq: 65535}
	n := rtxWrap(x, b)
	var got rtp.Packet
	require.NoError(t, got.Unmarshal(x.buf[:n]))
	require.Equal(t, []byte{1, 2}, got.GetExtension(3))
	require.Equal(t, []uint32{42}, got.CSRC)
	require.Equal(t, uint16(65535), got.SequenceNumber)
	require.Equal(t, uint16(0), x.seq, "wraps")
	require.Equal(t, append([]byte{0, 77}, "payload"...), got.Payload)

	for _, bad := range [][]byte{nil, b[:11], {0x90, 96, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0xbe, 0xde, 0, 9}} {
		require.Zero(t, rtxWrap(x, bad))
	}
}

func TestRTXPayloadType(t *testing.T) {
	codecs := []webrtc.RTPCodecParameters{
		{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8}, PayloadType: 96},
		{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeRTX, SDPFmtpLine: "apt=96"}, PayloadType: 97},
		{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeRTX, SDPFmtpLine: "apt=102"}, PayloadType: 103},
	}
	pt, ok := RTXPayloadType(96, codecs)
	require.True(t, ok)
	require.EqualValues(t, 97, pt)
	pt, ok = RTXPayloadType(102, codecs)
	require.True(t, ok)
	require.EqualValues(t, 103, pt)
	_, ok = RTXPayloadType(9, codecs)
	require.False(t, ok, "apt=9 is not apt=96")
	_, ok = RTXPayloadType(111, codecs)
	require.False(t, ok)
}

// BenchmarkRTXWrap is the per-packet cost of resending on an RTX stream (no allocation).
func BenchmarkRTXWrap(b *testing.B) {
	p := rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: 1, SSRC: 5, PayloadType: 96}, Payload: make([]byte, 1100)}
	pkt, err := p.Marshal()
	require.NoError(b, err)
	x := &rtxStream{ssrc: 8, pt: 97}
	b.ReportAllocs()
	b.SetBytes(int64(len(pkt)))
	for b.Loop() {
		if rtxWrap(x, pkt) == 0 {
			b.Fatal("not wrapped")
		}
	}
}
