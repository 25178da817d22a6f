package rtcclient

import (
	"testing"

	"github.com/pion/webrtc/v4"
	"github.com/stretchr/testify/require"
)

func TestStartsKeyFrame(t *testing.T) {
	for _, tc := range []struct {
		name    string
		mime    string
		payload []byte
		want    bool
	}{
		{"vp8 key", webrtc.MimeTypeVP8, []byte{0x10, 0x00, 0x9d}, true},
		{"vp8 inter", webrtc.MimeTypeVP8, []byte{0x10, 0x01}, false},
		{"vp8 continuation", webrtc.MimeTypeVP8, []byte{0x00, 0x00}, false},
		{"vp8 other partition", webrtc.MimeTypeVP8, []byte{0x11, 0x00}, false},
		{"vp8 15-bit picture id, key", webrtc.MimeTypeVP8, []byte{0x90, 0x80, 0x81, 0x23, 0x00}, true},
		{"vp8 7-bit picture id, TL0, TID, inter", webrtc.MimeTypeVP8, []byte{0x90, 0xe0, 0x12, 0x01, 0x40, 0x01}, false},
		{"vp8 truncated", webrtc.MimeTypeVP8, []byte{0x90, 0x80}, false},
		{"h264 idr", webrtc.MimeTypeH264, []byte{0x65, 0x88}, true},
		{"h264 sps", webrtc.MimeTypeH264, []byte{0x67, 0x42}, true},
		{"h264 non-idr slice", webrtc.MimeTypeH264, []byte{0x41, 0x9a}, false},
		{"h264 stap-a sps pps", webrtc.MimeTypeH264, []byte{0x78, 0x00, 0x02, 0x67, 0x42, 0x00, 0x02, 0x68, 0xce}, true},
		{"h264 stap-a truncated", webrtc.MimeTypeH264, []byte{0x78, 0x00, 0x09, 0x67}, false},
		{"h264 fu-a idr start", webrtc.MimeTypeH264, []byte{0x7c, 0x85, 0x88}, true},
		{"h264 fu-a idr middle", webrtc.MimeTypeH264, []byte{0x7c, 0x05, 0x88}, false},
		{"h264 fu-a slice start", webrtc.MimeTypeH264, []byte{0x7c, 0x81, 0x9a}, false},
		{"opus", webrtc.MimeTypeOpus, []byte{0x10, 0x00}, false},
		{"empty", webrtc.MimeTypeVP8, nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, StartsKeyFrame(tc.mime, tc.payload))
		})
	}
}
