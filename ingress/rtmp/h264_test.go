package rtmp_test

import (
	"bytes"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/ingress/rtmp"
)

var (
	sps = []byte{0x67, 0x42, 0xc0, 0x1e, 0xd9, 0x00, 0xa0, 0x47, 0xfe, 0xc8}
	pps = []byte{0x68, 0xce, 0x3c, 0x80}
)

func nalu(typ byte, size int) []byte {
	b := bytes.Repeat([]byte{0xab}, size)
	b[0] = 0x60 | typ
	return b
}

func unmarshal(t *testing.T, pkts [][]byte) []rtp.Packet {
	out := make([]rtp.Packet, len(pkts))
	for i, p := range pkts {
		require.NoError(t, out[i].Unmarshal(p))
		require.LessOrEqual(t, len(out[i].Payload), 1200)
	}
	return out
}

func TestH264Fmtp(t *testing.T) {
	f, ok := rtmp.H264Fmtp(sps)
	require.True(t, ok)
	require.Equal(t, "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42c01e", f)
	_, ok = rtmp.H264Fmtp(pps)
	require.False(t, ok)
	_, ok = rtmp.H264Fmtp(sps[:3])
	require.False(t, ok)
}

// TestPacketizer: a key frame starts with SPS and PPS in one STAP-A, a big slice is split in
// FU-A fragments, the marker ends each frame, timestamps are the PTS at 90 kHz from the base,
// sequence numbers run on (and wrap).
func TestPacketizer(t *testing.T) {
	p := rtmp.NewPacketizer(sps, pps, 0x1234, 0xfffe, 1000)

	pkts, key := p.Packetize(time.Second, [][]byte{{0x09, 0xf0}, nalu(5, 3000)})
	require.True(t, key)
	got := unmarshal(t, pkts)
	require.Len(t, got, 1+3, "STAP-A, then three FU-A fragments of 3000 bytes")
	require.Equal(t, byte(24), got[0].Payload[0]&0x1f, "STAP-A first")
	require.Equal(t, sps, got[0].Payload[3:3+len(sps)])
	for i, g := range got {
		require.Equal(t, uint32(0x1234), g.SSRC)
		require.Equal(t, uint16(0xfffe+i), g.SequenceNumber)
		require.Equal(t, uint32(1000+90000), g.Timestamp)
		require.Equal(t, i == len(got)-1, g.Marker)
	}
	require.Equal(t, byte(28), got[1].Payload[0]&0x1f)
	require.Equal(t, byte(0x80|5), got[1].Payload[1], "FU-A start of an IDR")

	pkts, key = p.Packetize(time.Second+33*time.Millisecond, [][]byte{nalu(1, 500), nalu(1, 400)})
	require.False(t, key)
	got = unmarshal(t, pkts)
	require.Len(t, got, 2, "two single NAL units, no parameter sets")
	require.Equal(t, uint16(2), got[0].SequenceNumber, "wrapped")
	require.Equal(t, uint32(1000+90000+2970), got[1].Timestamp)
	require.False(t, got[0].Marker)
	require.True(t, got[1].Marker)

	// A new sequence header alone sends nothing; the next key frame carries it.
	sps2 := append([]byte{0x67, 0x64, 0x00, 0x1f}, 0xac)
	pkts, _ = p.Packetize(2*time.Second, [][]byte{sps2, pps})
	require.Empty(t, pkts)
	require.Equal(t, sps2, p.SPS())
	pkts, _ = p.Packetize(2*time.Second, [][]byte{nalu(5, 100)})
	got = unmarshal(t, pkts)
	require.Len(t, got, 2, "STAP-A of SPS and PPS, then the small IDR")
	require.Equal(t, sps2, got[0].Payload[3:3+len(sps2)])

	pkts, _ = p.Packetize(3*time.Second, [][]byte{{}, {0x09, 0x10}})
	require.Empty(t, pkts, "nothing but an AUD")
}
