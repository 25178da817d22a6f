package rtc

import (
	"testing"

	"github.com/pion/interceptor"
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

// parsing is an inner interceptor that parses what it is handed, as pion's receiver-report
// interceptor does, and keeps the packet types.
type parsing struct {
	interceptor.NoOp
	seen [][]rtcp.Packet
}

func (p *parsing) BindRTCPReader(r interceptor.RTCPReader) interceptor.RTCPReader {
	return interceptor.RTCPReaderFunc(func(b []byte, a interceptor.Attributes) (int, interceptor.Attributes, error) {
		n, attr, err := r.Read(b, a)
		if err != nil {
			return n, attr, err
		}
		pkts, err := rtcp.Unmarshal(b[:n])
		if err != nil {
			return 0, nil, err
		}
		p.seen = append(p.seen, pkts)
		return n, attr, nil
	})
}

func TestSenderReportsOnly(t *testing.T) {
	marshal := func(pkts ...rtcp.Packet) []byte {
		b, err := rtcp.Marshal(pkts)
		require.NoError(t, err)
		return b
	}
	sr := marshal(&rtcp.SenderReport{SSRC: 1, NTPTime: 5}, &rtcp.SourceDescription{})
	rr := marshal(&rtcp.ReceiverReport{SSRC: 2})
	feedback := marshal(&rtcp.ReceiverReport{SSRC: 2}, &rtcp.TransportLayerCC{SenderSSRC: 2, MediaSSRC: 1, PacketStatusCount: 1,
		PacketChunks: []rtcp.PacketStatusChunk{&rtcp.RunLengthChunk{PacketStatusSymbol: rtcp.TypeTCCPacketNotReceived, RunLength: 1}}})
	inner := &parsing{}
	wrapped := &senderReportsOnly{Interceptor: inner}
	var next []byte
	r := wrapped.BindRTCPReader(interceptor.RTCPReaderFunc(func(b []byte, a interceptor.Attributes) (int, interceptor.Attributes, error) {
		return copy(b, next), a, nil
	}))
	buf := make([]byte, 1500)
	for _, pkt := range [][]byte{rr, sr, feedback, sr} {
		next = pkt
		n, _, err := r.Read(buf, nil)
		require.NoError(t, err)
		require.Equal(t, pkt, buf[:n], "every packet reaches the reader above")
	}
	require.Len(t, inner.seen, 2, "only the sender reports reach the inner interceptor")
	for _, pkts := range inner.seen {
		require.IsType(t, &rtcp.SenderReport{}, pkts[0])
	}
	require.False(t, hasSenderReport(nil))
	require.False(t, hasSenderReport([]byte{0x80, 201, 0xff, 0xff}))
}
