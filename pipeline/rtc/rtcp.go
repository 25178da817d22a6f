package rtc

import (
	"fmt"

	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
)

// IsKeyframeRequest reports whether marshalled RTCP (as it arrives on a track's feedback
// subject) holds a PLI or FIR; publishers answer those with a keyframe.
func IsKeyframeRequest(data []byte) bool {
	pkts, err := rtcp.Unmarshal(data)
	if err != nil {
		return false
	}
	for _, p := range pkts {
		switch p.(type) {
		case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest:
			return true
		}
	}
	return false
}

// senderReports wraps pion's receiver-report interceptor so that it parses only the RTCP
// that holds a sender report, the one thing it reads (publishers send them). It parsed every
// compound packet of every connection into fresh objects: a viewer's receiver reports and,
// ten times a second, its transport-wide feedback, 6 % of the node's CPU at 100 browser-like
// viewers (docs/benchmarks.md).
type senderReports struct{ interceptor.Factory }

func (f senderReports) NewInterceptor(id string) (interceptor.Interceptor, error) {
	i, err := f.Factory.NewInterceptor(id)
	if err != nil {
		return nil, fmt.Errorf("rtc: receiver reports: %w", err)
	}
	return &senderReportsOnly{Interceptor: i}, nil
}

type senderReportsOnly struct{ interceptor.Interceptor }

// BindRTCPReader hands a packet to the inner reader only when it holds a sender report: the
// inner one reads from a replay of what was just read (one binding is read by one goroutine
// at a time, as pion does).
func (s *senderReportsOnly) BindRTCPReader(r interceptor.RTCPReader) interceptor.RTCPReader {
	var n int
	var attr interceptor.Attributes
	inner := s.Interceptor.BindRTCPReader(interceptor.RTCPReaderFunc(
		func([]byte, interceptor.Attributes) (int, interceptor.Attributes, error) { return n, attr, nil }))
	return interceptor.RTCPReaderFunc(func(b []byte, a interceptor.Attributes) (int, interceptor.Attributes, error) {
		k, at, err := r.Read(b, a)
		if err != nil || !hasSenderReport(b[:k]) {
			return k, at, err
		}
		n, attr = k, at
		return inner.Read(b, at)
	})
}

// hasSenderReport reports whether a compound RTCP packet holds a sender report.
func hasSenderReport(compound []byte) bool {
	for len(compound) >= 4 {
		if rtcp.PacketType(compound[1]) == rtcp.TypeSenderReport {
			return true
		}
		compound = compound[min(4*((int(compound[2])<<8|int(compound[3]))+1), len(compound)):]
	}
	return false
}
