package rtc

import (
	"testing"

	"github.com/pion/rtcp"
	"github.com/stretchr/testify/require"
)

func TestIsKeyframeRequest(t *testing.T) {
	marshal := func(pkts ...rtcp.Packet) []byte {
		b, err := rtcp.Marshal(pkts)
		require.NoError(t, err)
		return b
	}
	require.True(t, IsKeyframeRequest(marshal(&rtcp.PictureLossIndication{MediaSSRC: 1})))
	require.True(t, IsKeyframeRequest(marshal(&rtcp.ReceiverReport{SSRC: 2}, &rtcp.FullIntraRequest{MediaSSRC: 1, FIR: []rtcp.FIREntry{{SSRC: 1, SequenceNumber: 1}}})))
	require.False(t, IsKeyframeRequest(marshal(&rtcp.TransportLayerNack{MediaSSRC: 1, Nacks: []rtcp.NackPair{{PacketID: 5}}})))
	require.False(t, IsKeyframeRequest([]byte{0x80, 0xff}), "garbage is not a request")
	require.False(t, IsKeyframeRequest(nil))
}
