package rtmp

import (
	"encoding/binary"
	"testing"

	"github.com/stretchr/testify/require"
)

func rtpHeader(seq uint16, ts, ssrc uint32) []byte {
	p := make([]byte, 12)
	p[0], p[1] = 0x80, 97
	binary.BigEndian.PutUint16(p[2:4], seq)
	binary.BigEndian.PutUint32(p[4:8], ts)
	binary.BigEndian.PutUint32(p[8:12], ssrc)
	return p
}

// TestRestamp: ffmpeg's packets leave with the transcoder's SSRC and payload type, a
// continuous sequence, and timestamps that go on one frame later when a restarted child
// starts from a new random base.
func TestRestamp(t *testing.T) {
	tr := &Transcoder{ssrc: 42, seq: 65535, offset: 5000}
	var got [][3]uint32
	for _, in := range [][3]uint32{{7, 100, 1}, {8, 1060, 1}, {9, 2020, 1}, {500, 90000, 2}, {501, 90960, 2}} {
		p := rtpHeader(uint16(in[0]), in[1], in[2])
		tr.restamp(p)
		require.Equal(t, byte(opusPayloadType), p[1]&0x7f)
		got = append(got, [3]uint32{uint32(binary.BigEndian.Uint16(p[2:4])), binary.BigEndian.Uint32(p[4:8]), binary.BigEndian.Uint32(p[8:12])})
	}
	require.Equal(t, [][3]uint32{{65535, 5000, 42}, {0, 5960, 42}, {1, 6920, 42}, {2, 7880, 42}, {3, 8840, 42}}, got)
}
