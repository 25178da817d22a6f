package stagetime_test

import (
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/pipeline/stagetime"
)

func rtpPacket(ssrc uint32, seq uint16) []byte {
	p := make([]byte, 20)
	p[0], p[1] = 0x80, 96
	p[2], p[3] = byte(seq>>8), byte(seq)
	p[8], p[9], p[10], p[11] = byte(ssrc>>24), byte(ssrc>>16), byte(ssrc>>8), byte(ssrc)
	return p
}

func TestHistogramBucketsAndQuantiles(t *testing.T) {
	var h stagetime.Histogram
	for _, d := range []time.Duration{0, 500 * time.Nanosecond, 3 * time.Microsecond, 3 * time.Microsecond,
		40 * time.Microsecond, 2 * time.Millisecond, -time.Second, 10 * time.Minute} {
		h.Observe(d)
	}
	s := h.Snapshot()
	require.Equal(t, uint64(8), s.Count)
	require.Equal(t, uint64(3), s.Buckets[0], "0, 500 ns and the negative one are under 1 µs")
	require.Equal(t, uint64(2), s.Buckets[2], "3 µs is in [2, 4) µs")
	require.Equal(t, uint64(1), s.Buckets[stagetime.Buckets-1], "10 min goes to the last bucket")
	require.Equal(t, 4*time.Microsecond, s.Quantile(0.5))
	require.Equal(t, time.Microsecond, s.Quantile(0))
	require.Equal(t, stagetime.UpperBound(stagetime.Buckets-1), s.Quantile(1))
	require.Equal(t, time.Duration(0), stagetime.Snapshot{}.Quantile(0.5))
}

func TestIngestFromArrival(t *testing.T) {
	var tm stagetime.Timings
	t0 := time.Unix(1000, 0)
	tm.Arrived(rtpPacket(7, 100), t0)
	tm.Arrived([]byte{0x80, 200, 0, 1, 0, 0, 0, 0, 0, 0, 0, 7}, t0) // RTCP: ignored
	tm.Arrived([]byte{0x16, 0xfe}, t0)                              // DTLS, short: ignored
	tm.Ingested(rtpPacket(7, 100), t0.Add(300*time.Microsecond))
	tm.Ingested(rtpPacket(8, 100), t0.Add(time.Millisecond))  // another SSRC: not remembered
	tm.Ingested(rtpPacket(7, 1124), t0.Add(time.Millisecond)) // same slot, other seq
	tm.Ingested([]byte{1, 2}, t0)                             // too short
	s := tm.Snapshot(stagetime.Ingest)
	require.Equal(t, uint64(1), s.Count)
	require.Equal(t, 300*time.Microsecond, s.Sum)
}

func TestNilTimingsRecordNothing(t *testing.T) {
	var tm *stagetime.Timings
	tm.Arrived(rtpPacket(1, 1), time.Now())
	tm.Ingested(rtpPacket(1, 1), time.Now())
	tm.Observe(stagetime.Fanout, time.Second)
	tm.Since(stagetime.Send, time.Now())
	require.Equal(t, uint64(0), tm.Snapshot(stagetime.Fanout).Count)
	require.Equal(t, "fanout", stagetime.Fanout.String())
}

// Writers on several goroutines and a reader beside them: the race detector's case.
func TestTimingsConcurrent(t *testing.T) {
	var tm stagetime.Timings
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 2000 {
				p := rtpPacket(uint32(g), uint16(i))
				tm.Arrived(p, time.Now())
				tm.Ingested(p, time.Now())
				tm.Observe(stagetime.Queue, time.Duration(i)*time.Microsecond)
			}
		})
	}
	wg.Go(func() {
		for range 100 {
			_ = tm.Snapshot(stagetime.Queue).Quantile(0.99)
		}
	})
	wg.Wait()
	require.Equal(t, uint64(8000), tm.Snapshot(stagetime.Queue).Count)
	require.LessOrEqual(t, tm.Snapshot(stagetime.Ingest).Count, uint64(8000))
}

func BenchmarkArrivedIngested(b *testing.B) {
	var tm stagetime.Timings
	p := rtpPacket(1, 0)
	b.ReportAllocs()
	now := time.Now()
	for i := range b.N {
		p[3] = byte(i)
		tm.Arrived(p, now)
		tm.Ingested(p, now)
	}
}
