package bwe_test

import (
	"testing"
	"time"

	"github.com/pion/interceptor/pkg/twcc"
	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/pipeline/bwe"
)

// benchCycle is 64 feedback messages of 100 ms each, a viewer of a 2 Mbit/s track and audio
// (about 260 packets a second), recorded once and replayed shifted in time.
type benchStep struct {
	raw  []byte
	sent []benchSent
}

type benchSent struct {
	seq  uint16
	at   time.Duration
	size int
}

const benchSteps = 64 // 6.4 s: 100 units of the 64 ms reference time

func benchCycle(b *testing.B) []benchStep {
	rec := twcc.NewRecorder(1)
	steps := make([]benchStep, benchSteps)
	var seq uint16
	for i := range steps {
		start := time.Duration(i) * 100 * time.Millisecond
		for f := range 3 { // 3 frames of 7 packets and 5 audio packets per 100 ms
			at := start + time.Duration(f)*33*time.Millisecond
			for range 7 {
				steps[i].sent = append(steps[i].sent, benchSent{seq, at, 1200})
				rec.Record(2, seq, int64((at+20*time.Millisecond+time.Duration(seq%5)*time.Microsecond)/time.Microsecond))
				seq++
			}
		}
		for a := range 5 {
			at := start + time.Duration(a)*20*time.Millisecond
			steps[i].sent = append(steps[i].sent, benchSent{seq, at, 120})
			rec.Record(2, seq, int64((at+20*time.Millisecond)/time.Microsecond))
			seq++
		}
		pkts := rec.BuildFeedbackPacket()
		require.Len(b, pkts, 1)
		raw, err := pkts[0].Marshal()
		require.NoError(b, err)
		steps[i].raw = raw
	}
	return steps
}

// BenchmarkFeedback is the node's whole per-viewer estimator work for one feedback message
// (100 ms of a 2 Mbit/s viewer): recording the 26 packets it reports as they are sent, then
// parsing the message and updating the estimate. 0 allocs/op is the point.
func BenchmarkFeedback(b *testing.B) {
	steps := benchCycle(b)
	var h bwe.History
	e := bwe.New(bwe.Config{})
	buf := make([]byte, 1500)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		k, st := i/benchSteps, &steps[i%benchSteps]
		shift := time.Duration(k) * benchSteps * 100 * time.Millisecond
		for _, s := range st.sent {
			h.Sent(s.seq, s.at+shift, s.size)
		}
		raw := buf[:copy(buf, st.raw)]
		ref := (uint32(raw[16])<<16 | uint32(raw[17])<<8 | uint32(raw[18])) + uint32(k*100)
		raw[16], raw[17], raw[18], raw[19] = byte(ref>>16), byte(ref>>8), byte(ref), byte(i)
		fb, err := bwe.ParseFeedback(raw)
		if err != nil {
			b.Fatal(err)
		}
		e.OnFeedback(shift+time.Duration(i%benchSteps)*100*time.Millisecond+40*time.Millisecond, &fb, &h)
	}
	b.StopTimer()
	if est := e.Estimate(0); est.Congested || est.Feedbacks != uint64(b.N) {
		b.Fatalf("a clean path's estimate: %+v", est)
	}
}

// BenchmarkSent is the per-packet part alone: one packet's send record.
func BenchmarkSent(b *testing.B) {
	var h bwe.History
	b.ReportAllocs()
	for i := range b.N {
		h.Sent(uint16(i), time.Duration(i), 1200)
	}
}
