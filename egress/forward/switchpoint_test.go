package forward

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func rtpWith(payload []byte, ext bool) []byte {
	h := []byte{0x80, 96, 0, 1, 0, 0, 0, 1, 0, 0, 0, 9}
	if ext {
		h[0] |= 0x10
		h = append(h, 0xbe, 0xde, 0, 1, 0x10, 0xaa, 0, 0)
	}
	return append(h, payload...)
}

func TestSwitchPoint(t *testing.T) {
	for _, tc := range []struct {
		name    string
		codec   string
		payload []byte
		want    bool
	}{
		{"vp8 key, no extension", "video/VP8", []byte{0x10, 0x00, 0x9d, 0x01, 0x2a}, true},
		{"vp8 delta", "video/VP8", []byte{0x10, 0x01}, false},
		{"vp8 not a start", "video/VP8", []byte{0x00, 0x00}, false},
		{"vp8 key, 15-bit picture id", "video/VP8", []byte{0x90, 0x80, 0x81, 0x23, 0x00}, true},
		{"vp8 delta, picture id, tl0, tid", "video/VP8", []byte{0x90, 0xe0, 0x05, 0x01, 0x20, 0x01}, false},
		{"vp8 key, picture id, tl0, tid", "video/VP8", []byte{0x90, 0xe0, 0x05, 0x01, 0x20, 0x00}, true},
		{"vp8 truncated", "video/VP8", []byte{0x90, 0x80}, false},
		{"h264 idr", "video/H264", []byte{0x65, 0x88}, true},
		{"h264 sps", "video/H264", []byte{0x67, 0x42}, true},
		{"h264 slice", "video/H264", []byte{0x41, 0x9a}, false},
		{"h264 stap-a sps pps", "video/H264", []byte{0x78, 0, 2, 0x67, 0x42, 0, 1, 0x68}, true},
		{"h264 stap-a bad size", "video/H264", []byte{0x78, 0, 9, 0x67}, false},
		{"h264 fu-a idr start", "video/H264", []byte{0x7c, 0x85, 0}, true},
		{"h264 fu-a idr middle", "video/H264", []byte{0x7c, 0x05, 0}, false},
		{"h264 fu-a slice start", "video/H264", []byte{0x7c, 0x81, 0}, false},
		{"other codec", "video/AV1", []byte{0x00}, true},
	} {
		for _, ext := range []bool{false, true} {
			require.Equal(t, tc.want, SwitchPoint(tc.codec, rtpWith(tc.payload, ext)), "%s ext=%v", tc.name, ext)
		}
	}
	require.False(t, SwitchPoint("video/VP8", []byte{0x80, 96}))
	require.False(t, SwitchPoint("video/VP8", rtpWith(nil, false)))
	bad := rtpWith([]byte{0x10, 0}, true)
	bad[15] = 200 // extension longer than the packet
	require.False(t, SwitchPoint("video/VP8", bad))
}

func FuzzSwitchPoint(f *testing.F) {
	f.Add(rtpWith([]byte{0x90, 0x80, 0x81, 0x23, 0x00}, true))
	f.Add(rtpWith([]byte{0x78, 0, 2, 0x67, 0x42, 0, 1, 0x68}, false))
	f.Fuzz(func(t *testing.T, pkt []byte) {
		SwitchPoint("video/VP8", pkt)
		SwitchPoint("video/H264", pkt)
	})
}

// BenchmarkKeyframeStart is the cost a pending layer switch adds to each packet of the
// layer it waits for.
func BenchmarkSwitchPoint(b *testing.B) {
	vp8 := rtpWith([]byte{0x90, 0xe0, 0x05, 0x01, 0x20, 0x01, 0, 0}, true)
	h264 := rtpWith([]byte{0x7c, 0x81, 0, 0}, true)
	b.ReportAllocs()
	for b.Loop() {
		SwitchPoint("video/VP8", vp8)
		SwitchPoint("video/H264", h264)
	}
}
