package forward

import (
	"testing"

	"github.com/pion/rtcp"
	"github.com/stretchr/testify/require"
)

func TestAnswerable(t *testing.T) {
	marshal := func(pkts ...rtcp.Packet) []byte {
		b, err := rtcp.Marshal(pkts)
		require.NoError(t, err)
		return b
	}
	rr := &rtcp.ReceiverReport{SSRC: 1}
	twcc := &rtcp.TransportLayerCC{SenderSSRC: 1, MediaSSRC: 2, PacketStatusCount: 1,
		PacketChunks: []rtcp.PacketStatusChunk{&rtcp.RunLengthChunk{PacketStatusSymbol: rtcp.TypeTCCPacketNotReceived, RunLength: 1}}}
	nack := &rtcp.TransportLayerNack{SenderSSRC: 1, MediaSSRC: 2, Nacks: []rtcp.NackPair{{PacketID: 3}}}
	remb := &rtcp.ReceiverEstimatedMaximumBitrate{SenderSSRC: 1, Bitrate: 1e6, SSRCs: []uint32{2}}
	for name, c := range map[string]struct {
		b    []byte
		want bool
	}{
		"receiver report":          {marshal(rr), false},
		"report and feedback":      {marshal(rr, twcc), false},
		"report and REMB":          {marshal(rr, remb), false},
		"NACK after feedback":      {marshal(rr, twcc, nack), true},
		"PLI":                      {marshal(rr, &rtcp.PictureLossIndication{MediaSSRC: 2}), true},
		"FIR":                      {marshal(&rtcp.FullIntraRequest{FIR: []rtcp.FIREntry{{SSRC: 2}}}), true},
		"empty":                    {nil, false},
		"a length past the end":    {[]byte{0x80, 201, 0xff, 0xff, 0, 0, 0, 1}, false},
		"NACK behind a bad length": {append([]byte{0x80, 201, 0, 0}, marshal(nack)...), true},
	} {
		require.Equal(t, c.want, answerable(c.b), name)
	}
}
