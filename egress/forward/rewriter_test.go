package forward_test

import (
	"bytes"
	"testing"

	"github.com/pion/rtp"
	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/egress/forward"
)

func packet(t testing.TB, ssrc uint32, seq uint16, ts uint32, marker bool, payload string) []byte {
	t.Helper()
	p := rtp.Packet{Header: rtp.Header{Version: 2, Marker: marker, PayloadType: 100, SequenceNumber: seq, Timestamp: ts, SSRC: ssrc},
		Payload: []byte(payload)}
	b, err := p.Marshal()
	require.NoError(t, err)
	return b
}

func parse(t testing.TB, b []byte) rtp.Packet {
	t.Helper()
	var p rtp.Packet
	require.NoError(t, p.Unmarshal(b))
	return p
}

func TestRewriterHeader(t *testing.T) {
	rw := forward.Rewriter{SSRC: 0xCAFE, PayloadType: 96}
	for _, marker := range []bool{false, true} {
		b := packet(t, 0x1111, 10, 1000, marker, "frame")
		require.True(t, rw.Rewrite(b))
		p := parse(t, b)
		require.Equal(t, uint32(0xCAFE), p.SSRC)
		require.Equal(t, uint8(96), p.PayloadType)
		require.Equal(t, marker, p.Marker, "marker bit kept")
		require.Equal(t, uint16(10), p.SequenceNumber, "first source below 2^15 keeps its numbering")
		require.Equal(t, uint32(1000), p.Timestamp)
		require.Equal(t, "frame", string(p.Payload), "payload untouched")
	}
	require.Equal(t, uint32(0x1111), rw.Source())
}

func TestRewriterSourceSwitch(t *testing.T) {
	type in struct {
		ssrc uint32
		seq  uint16
		ts   uint32
	}
	tests := []struct {
		name    string
		in      []in
		wantSeq []uint16
		wantTS  []uint32
	}{
		{"one source passes through",
			[]in{{1, 100, 9000}, {1, 101, 9000}, {1, 102, 12000}},
			[]uint16{100, 101, 102}, []uint32{9000, 9000, 12000}},
		{"switch continues after the last packet sent",
			[]in{{1, 100, 9000}, {1, 101, 12000}, {2, 5000, 77}, {2, 5001, 3077}},
			[]uint16{100, 101, 102, 103}, []uint32{9000, 12000, 15000, 18000}},
		{"switch back and forth",
			[]in{{1, 10, 0}, {2, 60000, 1 << 31}, {2, 60001, 1<<31 + 10}, {1, 11, 90}},
			[]uint16{10, 11, 12, 13}, []uint32{0, 3000, 3010, 6010}},
		{"first packet's number above 2^15 starts the viewer below it",
			[]in{{1, 65534, 100}, {1, 65535, 200}, {1, 0, 300}, {2, 7, 5}, {2, 8, 6}},
			[]uint16{32766, 32767, 32768, 32769, 32770}, []uint32{100, 200, 300, 3300, 3301}},
		{"switch across the sequence wrap",
			[]in{{1, 32766, 100}, {1, 32767, 200}, {2, 7, 5}, {2, 8, 6}, {1, 32768, 300}, {1, 32769, 400}},
			[]uint16{32766, 32767, 32768, 32769, 32770, 32771}, []uint32{100, 200, 3200, 3201, 6201, 6301}},
		{"the viewer's numbers wrap where the source's do",
			[]in{{1, 30000, 1}, {1, 65535, 2}, {1, 0, 3}},
			[]uint16{30000, 65535, 0}, []uint32{1, 2, 3}},
		{"reordered packet after a switch continues from the newest",
			[]in{{1, 100, 1000}, {1, 102, 3000}, {1, 101, 2000}, {2, 40, 0}},
			[]uint16{100, 102, 101, 103}, []uint32{1000, 3000, 2000, 6000}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rw := forward.Rewriter{SSRC: 9, PayloadType: 96}
			for i, x := range tt.in {
				b := packet(t, x.ssrc, x.seq, x.ts, false, "x")
				require.True(t, rw.Rewrite(b))
				p := parse(t, b)
				require.Equal(t, tt.wantSeq[i], p.SequenceNumber, "packet %d seq", i)
				require.Equal(t, tt.wantTS[i], p.Timestamp, "packet %d ts", i)
				require.Equal(t, uint32(9), p.SSRC)

				src, ok := rw.SourceSeq(p.SequenceNumber)
				require.True(t, ok)
				require.Equal(t, x.seq, src, "SourceSeq maps packet %d back", i)
				require.Equal(t, x.ssrc, rw.Source())
			}
		})
	}
}

// Whatever the source's first number, the viewer's stream starts below 2^15, and every later
// packet keeps the distance to it (SRTP's rollover guess at the receiver needs that margin).
func TestRewriterStartsBelowHalfRange(t *testing.T) {
	for _, first := range []uint16{0, 1, 32767, 32768, 40000, 65535} {
		rw := forward.Rewriter{SSRC: 9, PayloadType: 96}
		b := packet(t, 1, first, 0, false, "x")
		require.True(t, rw.Rewrite(b))
		out := parse(t, b).SequenceNumber
		require.Less(t, out, uint16(1<<15), "first source number %d", first)
		next := packet(t, 1, first+100, 0, false, "x")
		require.True(t, rw.Rewrite(next))
		require.Equal(t, out+100, parse(t, next).SequenceNumber)
		src, ok := rw.SourceSeq(out + 100)
		require.True(t, ok)
		require.Equal(t, first+100, src)
	}
}

func TestRewriterSourceSeqBeforeStart(t *testing.T) {
	var rw forward.Rewriter
	_, ok := rw.SourceSeq(5)
	require.False(t, ok)
}

func TestRewriterRejects(t *testing.T) {
	good := packet(t, 1, 1, 1, false, "")
	v1 := append([]byte(nil), good...)
	v1[0] = v1[0]&0x3f | 1<<6
	v0 := append([]byte(nil), good...)
	v0[0] &= 0x3f
	tests := map[string][]byte{
		"empty":     {},
		"short":     good[:forward.MinHeader-1],
		"version 1": v1,
		"version 0": v0,
	}
	for name, b := range tests {
		t.Run(name, func(t *testing.T) {
			rw := forward.Rewriter{SSRC: 9, PayloadType: 96}
			before := bytes.Clone(b)
			require.False(t, rw.Rewrite(b))
			require.Equal(t, before, b, "rejected packet left unchanged")
			_, ok := rw.SourceSeq(1)
			require.False(t, ok, "a rejected packet does not start the rewriter")
		})
	}
	rw := forward.Rewriter{SSRC: 9}
	require.True(t, rw.Rewrite(good[:forward.MinHeader]), "a bare header is a packet")
}
