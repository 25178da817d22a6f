package rtc

import (
	"strings"
	"testing"

	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
	"github.com/stretchr/testify/require"
)

// An offer made with a transceiver limited to H.264 lists only H.264 and the RTX that repairs
// it; a codec the node does not receive is an error.
func TestPreferCodec(t *testing.T) {
	me := &webrtc.MediaEngine{}
	require.NoError(t, me.RegisterDefaultCodecs())
	pc, err := webrtc.NewAPI(webrtc.WithMediaEngine(me)).NewPeerConnection(webrtc.Configuration{})
	require.NoError(t, err)
	defer func() { _ = pc.Close() }()
	tx, err := pc.AddTransceiverFromKind(webrtc.RTPCodecTypeVideo, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly})
	require.NoError(t, err)
	require.ErrorContains(t, PreferCodec(tx, "video/NOPE"), "not one this node receives")
	require.NoError(t, PreferCodec(tx, "video/h264"))

	offer, err := pc.CreateOffer(nil)
	require.NoError(t, err)
	var s sdp.SessionDescription
	require.NoError(t, s.Unmarshal([]byte(offer.SDP)))
	require.Len(t, s.MediaDescriptions, 1)
	h264, rtx := map[string]bool{}, 0
	for _, a := range s.MediaDescriptions[0].Attributes {
		if a.Key != "rtpmap" {
			continue
		}
		pt, name, _ := strings.Cut(a.Value, " ")
		switch {
		case strings.HasPrefix(name, "H264/"):
			h264[pt] = true
		case strings.HasPrefix(name, "rtx/"):
			rtx++
		default:
			t.Fatalf("the offer lists %s", a.Value)
		}
	}
	require.NotEmpty(t, h264)
	require.Equal(t, len(h264), rtx, "one RTX per H.264 profile")
	for _, a := range s.MediaDescriptions[0].Attributes {
		if a.Key == "fmtp" && strings.Contains(a.Value, "apt=") {
			apt := a.Value[strings.Index(a.Value, "apt=")+4:]
			require.True(t, h264[strings.TrimSpace(strings.Split(apt, ";")[0])], a.Value)
		}
	}
}
