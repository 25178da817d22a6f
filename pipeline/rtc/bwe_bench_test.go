package rtc

import (
	"testing"

	"github.com/pion/interceptor"
	"github.com/pion/interceptor/pkg/twcc"
	"github.com/pion/logging"
	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
)

// benchPerMessage is the packets a viewer of a 2 Mbit/s track and audio is sent between two
// feedback messages (100 ms): three frames of 7 packets and 5 audio packets.
const benchPerMessage = 26

// benchFeedback is one feedback message reporting benchPerMessage packets from base 0, as
// pion's twcc.Recorder builds it; the benchmark patches base, reference time and count.
func benchFeedback(b *testing.B) []byte {
	rec := twcc.NewRecorder(1)
	for i := range benchPerMessage {
		rec.Record(2, uint16(i), int64(20_000+i*3_800))
	}
	pkts := rec.BuildFeedbackPacket()
	raw, err := pkts[0].Marshal()
	if err != nil {
		b.Fatal(err)
	}
	return raw
}

// BenchmarkEstimator is one viewer's congestion-control work for 100 ms of a 2 Mbit/s track
// and audio, through the interceptors as a PeerConnection runs them: 26 packets numbered and
// recorded on their way out, then one transport-wide feedback message read. jetmedia is the
// node's estimator (pipeline/bwe), gcc pion's (--bwe-estimator gcc).
func BenchmarkEstimator(b *testing.B) {
	for _, name := range []string{EstimatorJetmedia, EstimatorGCC} {
		b.Run(name, func(b *testing.B) {
			me := &webrtc.MediaEngine{}
			ir := &interceptor.Registry{}
			set, _, err := addBWE(me, ir, BWEConfig{Estimator: name, Pacing: PacingConfig{Off: true}}, logging.NewDefaultLoggerFactory(), nil)
			if err != nil {
				b.Fatal(err)
			}
			chain, err := ir.Build("bench")
			if err != nil {
				b.Fatal(err)
			}
			defer chain.Close()
			info := &interceptor.StreamInfo{ID: "s", SSRC: 1, RTPHeaderExtensions: []interceptor.RTPHeaderExtension{{URI: sdp.TransportCCURI, ID: 5}}}
			w := chain.BindLocalStream(info, interceptor.RTPWriterFunc(func(h *rtp.Header, p []byte, _ interceptor.Attributes) (int, error) {
				return h.MarshalSize() + len(p), nil
			}))
			fb := benchFeedback(b)
			rtcpIn := make([]byte, len(fb))
			r := chain.BindRTCPReader(interceptor.RTCPReaderFunc(func(buf []byte, a interceptor.Attributes) (int, interceptor.Attributes, error) {
				return copy(buf, rtcpIn), a, nil
			}))
			payload := make([]byte, 1100)
			ext := make([]rtp.Extension, 0, 4)
			buf := make([]byte, 1500)
			var h rtp.Header
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				for k := range benchPerMessage {
					// As forward's lanes hand it: a rewritten header with room for an extension.
					h = rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: uint16(i*benchPerMessage + k), SSRC: 1, Extensions: ext[:0]}
					if _, err := w.Write(&h, payload, nil); err != nil {
						b.Fatal(err)
					}
				}
				copy(rtcpIn, fb)
				base, ref := uint16(i*benchPerMessage), uint32(i*2) // 128 ms a message
				rtcpIn[12], rtcpIn[13] = byte(base>>8), byte(base)
				rtcpIn[16], rtcpIn[17], rtcpIn[18], rtcpIn[19] = byte(ref>>16), byte(ref>>8), byte(ref), byte(i)
				if _, _, err := r.Read(buf, nil); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			if _, ok := set.Of("s"); !ok {
				b.Fatal("no estimate for the stream")
			}
		})
	}
}
