package loadgen

import (
	"context"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/stretchr/testify/require"
)

func TestProbeRoundTrip(t *testing.T) {
	p := make([]byte, 100)
	putProbe(p, 1_700_000_000_123_456_789, 42)
	sent, seq, ok := readProbe(p)
	require.True(t, ok)
	require.Equal(t, int64(1_700_000_000_123_456_789), sent)
	require.Equal(t, uint32(42), seq)

	_, _, ok = readProbe(p[:probeSize-1])
	require.False(t, ok, "too short")
	_, _, ok = readProbe(make([]byte, 100))
	require.False(t, ok, "no magic")
}

func TestRTPPayload(t *testing.T) {
	payload := []byte("0123456789abcdefghij")
	plain := rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: 1, SSRC: 9}, Payload: payload}
	ext := plain
	ext.Header.Extension = true
	ext.Header.ExtensionProfile = 0xBEDE
	require.NoError(t, ext.Header.SetExtension(1, []byte{0x01, 0x02}))
	csrc := plain
	csrc.Header.CSRC = []uint32{1, 2, 3}
	padded := plain
	padded.Header.Padding = true
	padded.PaddingSize = 7
	for name, p := range map[string]rtp.Packet{"plain": plain, "extension": ext, "csrc": csrc, "padding": padded} {
		t.Run(name, func(t *testing.T) {
			b, err := p.Marshal()
			require.NoError(t, err)
			got, err := rtpPayload(b)
			require.NoError(t, err)
			require.Equal(t, payload, got)
		})
	}
	for name, b := range map[string][]byte{
		"short":              {0x80, 0, 0},
		"version 1":          append([]byte{0x40}, make([]byte, 20)...),
		"extension past end": append([]byte{0x90}, make([]byte, 12)...),
		"padding past start": append([]byte{0xa0}, append(make([]byte, 11), 200)...),
	} {
		_, err := rtpPayload(b)
		require.ErrorIs(t, err, errNotRTP, name)
	}
}

func TestFramePackets(t *testing.T) {
	for _, tc := range []struct {
		frame, max int
		want       []int
	}{
		{8333, 1200, []int{1191, 1191, 1191, 1190, 1190, 1190, 1190}},
		{1200, 1200, []int{1200}},
		{1201, 1200, []int{601, 600}},
		{5, 1200, []int{probeSize}},
		{100, 4, []int{probeSize, probeSize, probeSize, probeSize, probeSize, probeSize}},
	} {
		got := framePackets(tc.frame, tc.max)
		require.Equal(t, tc.want, got, "frame %d max %d", tc.frame, tc.max)
	}
	// 2 Mbit/s at 30 fps: 8333 bytes a frame, 7 packets.
	require.Equal(t, 8333, frameBytes(2_000_000, 30))
	sum := 0
	for _, s := range framePackets(frameBytes(2_000_000, 30), 1200) {
		sum += s
	}
	require.Equal(t, 8333, sum, "the frame's bytes are all sent")
	require.Zero(t, frameBytes(1000, 0))
}

func TestDueAndSpread(t *testing.T) {
	start := time.Unix(1000, 0)
	require.Equal(t, start, due(start, 0, 30))
	require.Equal(t, start.Add(time.Second), due(start, 30, 30))
	require.Equal(t, start.Add(33_333_333*time.Nanosecond), due(start, 1, 30))
	require.Equal(t, start.Add(100*time.Second), due(start, 3_000_000, 30_000), "no drift over long runs")
	require.Equal(t, start.Add(20*time.Millisecond), due(start, 1, 50))

	require.Zero(t, spread(0, 1, time.Second))
	require.Zero(t, spread(3, 10, 0))
	require.Zero(t, spread(0, 5, 4*time.Second))
	require.Equal(t, time.Second, spread(1, 5, 4*time.Second))
	require.Equal(t, 4*time.Second, spread(4, 5, 4*time.Second))
}

func TestHistogramBuckets(t *testing.T) {
	prev := -1
	for v := uint64(0); v < 1<<22; v += 1 + v/97 {
		i := bucketOf(v)
		require.GreaterOrEqual(t, i, prev, "buckets are monotonic (%d)", v)
		prev = i
		mid := bucketValue(i)
		require.InDelta(t, float64(v), mid, math.Max(1, float64(v)*0.016), "value %d in bucket %d (mid %f)", v, i, mid)
	}
	require.Equal(t, histBuckets-1, bucketOf(math.MaxUint64))
}

func TestHistogramQuantiles(t *testing.T) {
	var h Histogram
	require.Zero(t, h.Quantile(0.5))
	for i := 1; i <= 1000; i++ {
		h.Record(time.Duration(i) * 10 * time.Microsecond) // 10 µs .. 10 ms
	}
	h.Record(-time.Second)
	require.Equal(t, uint64(1001), h.Count())
	for _, tc := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 5 * time.Millisecond}, {0.95, 9500 * time.Microsecond}, {0.99, 9900 * time.Microsecond}} {
		got := h.Quantile(tc.q)
		require.InDelta(t, float64(tc.want), float64(got), float64(tc.want)*0.02, "q%v", tc.q)
	}
	require.Equal(t, 10*time.Millisecond, h.Quantile(1), "max is exact")

	var a, b Histogram
	a.Record(time.Millisecond)
	b.Record(3 * time.Millisecond)
	b.Record(3 * time.Millisecond)
	a.Merge(&b)
	require.Equal(t, uint64(3), a.Count())
	require.InDelta(t, float64(3*time.Millisecond), float64(a.Quantile(0.5)), float64(50*time.Microsecond))
	require.Equal(t, 3*time.Millisecond, a.Quantile(1))
}

func TestHistogramRecordAllocs(t *testing.T) {
	var h Histogram
	require.Zero(t, testing.AllocsPerRun(100, func() { h.Record(1234 * time.Microsecond) }))
}

func TestPercentile(t *testing.T) {
	require.Zero(t, percentile(nil, 0.5))
	ds := []time.Duration{5, 1, 4, 2, 3}
	require.Equal(t, time.Duration(3), percentile(ds, 0.5))
	require.Equal(t, time.Duration(1), percentile(ds, 0))
	require.Equal(t, time.Duration(5), percentile(ds, 1))
	require.Equal(t, []time.Duration{5, 1, 4, 2, 3}, ds, "input left as it was")
}

func TestSeqTracker(t *testing.T) {
	for _, tc := range []struct {
		name           string
		seqs           []uint32
		lastSent       uint32
		expected, lost uint64
		dups           uint64
	}{
		{"nothing received", nil, 100, 0, 0, 0},
		{"all from the join on", []uint32{10, 11, 12, 13}, 13, 4, 0, 0},
		{"a gap", []uint32{10, 11, 13, 14}, 14, 5, 1, 0},
		{"tail lost", []uint32{10, 11}, 14, 5, 3, 0},
		{"retransmission fills a gap, duplicates ignored", []uint32{10, 12, 11, 12, 12}, 12, 3, 0, 2},
		{"reordered around the join", []uint32{11, 10, 12}, 12, 3, 0, 0},
		{"publisher's count behind what arrived", []uint32{1, 2, 3}, 2, 3, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var tr seqTracker
			for _, s := range tc.seqs {
				tr.add(s)
			}
			exp, lost := tr.loss(tc.lastSent)
			require.Equal(t, tc.expected, exp)
			require.Equal(t, tc.lost, lost)
			require.Equal(t, tc.dups, tr.dups)
		})
	}
	require.Zero(t, lossPercent(0, 0))
	require.InDelta(t, 25.0, lossPercent(4, 1), 1e-9)
}

func TestParseProc(t *testing.T) {
	stat := []byte("4242 (jet media (x)) S 1 4242 4242 0 -1 4194560 5000 0 0 0 250 75 0 0 20 0 12 0 100 2000000 3000 18446744073709551615\n")
	cpu, err := parseStatCPU(stat)
	require.NoError(t, err)
	require.Equal(t, 3250*time.Millisecond, cpu, "utime 250 + stime 75 ticks of 10 ms")
	_, err = parseStatCPU([]byte("4242 (x) S 1 2"))
	require.Error(t, err)

	rss, err := parseStatusRSS([]byte("Name:\tjetmedia\nVmPeak:\t  100 kB\nVmRSS:\t   51200 kB\nThreads:\t12\n"))
	require.NoError(t, err)
	require.Equal(t, int64(50<<20), rss)
	_, err = parseStatusRSS([]byte("Name:\tkthreadd\n"))
	require.Error(t, err)

	a := procSample{At: time.Unix(0, 0), CPU: 0}
	b := procSample{At: time.Unix(2, 0), CPU: 500 * time.Millisecond}
	require.InDelta(t, 25.0, cpuPercent(a, b), 1e-9)
	require.Zero(t, cpuPercent(b, b))

	self, err := readProc("self", time.Now())
	require.NoError(t, err)
	require.Positive(t, self.RSS)
}

func TestParseProcessMetrics(t *testing.T) {
	const scrape = `# HELP go_goroutines Number of goroutines that currently exist.
# TYPE go_goroutines gauge
go_goroutines 42
# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.
# TYPE process_cpu_seconds_total counter
process_cpu_seconds_total 12.34
# HELP process_resident_memory_bytes Resident memory size in bytes.
# TYPE process_resident_memory_bytes gauge
process_resident_memory_bytes 5.1200e+07
# TYPE jetmedia_rtp_packets_total counter
jetmedia_rtp_packets_total{direction="out"} 1e6
`
	cpu, rss, err := parseProcessMetrics(strings.NewReader(scrape))
	require.NoError(t, err)
	require.Equal(t, 12340*time.Millisecond, cpu)
	require.Equal(t, int64(51_200_000), rss)

	for name, tc := range map[string]struct{ in, want string }{
		"no process collector": {"# TYPE go_goroutines gauge\ngo_goroutines 42\n", "no single process_cpu_seconds_total"},
		"no rss":               {"process_cpu_seconds_total 1\n", "no single process_resident_memory_bytes"},
		"negative":             {"process_cpu_seconds_total -1\nprocess_resident_memory_bytes 1\n", "process_cpu_seconds_total = -1"},
		"not a number":         {"process_cpu_seconds_total NaN\nprocess_resident_memory_bytes 1\n", "NaN"},
		"two series":           {"process_cpu_seconds_total{a=\"1\"} 1\nprocess_cpu_seconds_total{a=\"2\"} 1\nprocess_resident_memory_bytes 1\n", "no single"},
		"not the text format":  {"<html>hello</html>", "metrics:"},
		"empty":                {"", "no single"},
	} {
		_, _, err := parseProcessMetrics(strings.NewReader(tc.in))
		require.ErrorContains(t, err, tc.want, name)
	}
}

// TestScrapeProcess reads this process's figures from a real client_golang process
// collector served over HTTP, as a node's /metrics serves them.
func TestScrapeProcess(t *testing.T) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	defer srv.Close()
	s, err := scrapeProcess(context.Background(), srv.Client(), srv.URL)
	require.NoError(t, err)
	require.Positive(t, s.RSS)
	self, err := readProc("self", time.Now())
	require.NoError(t, err)
	require.InDelta(t, float64(self.RSS), float64(s.RSS), float64(self.RSS)/2, "the same process by /proc and by its metrics")
	require.LessOrEqual(t, s.CPU, self.CPU+10*time.Millisecond)

	notFound := httptest.NewServer(http.NotFoundHandler())
	defer notFound.Close()
	_, err = scrapeProcess(context.Background(), notFound.Client(), notFound.URL+"/metrics")
	require.ErrorContains(t, err, "HTTP 404")
}

func TestValidateServerSampling(t *testing.T) {
	c := Defaults()
	c.MetricsURL = "http://127.0.0.1:8080/metrics"
	require.NoError(t, c.Validate())
	c.ServerPID = 42
	require.ErrorContains(t, c.Validate(), "give one of them")
	c.ServerPID, c.MetricsURL = 0, "127.0.0.1:8080/metrics"
	require.ErrorContains(t, c.Validate(), "metrics url")
	c.MetricsURL, c.ServerPID = "", -1
	require.ErrorContains(t, c.Validate(), "server pid -1")
}

func TestValidateMode(t *testing.T) {
	c := Defaults()
	require.Equal(t, ModeWHIP, c.Mode)
	c.Rooms = 3
	require.ErrorContains(t, c.Validate(), "only mode rooms")
	c.Mode = ModeRooms
	require.NoError(t, c.Validate())
	c.Subscribers = 0
	require.NoError(t, c.Validate(), "publishers only")
	c.Rooms = 0
	require.ErrorContains(t, c.Validate(), "rooms 0")
	c.Mode = "sip"
	require.ErrorContains(t, c.Validate(), `mode "sip"`)
}

func TestValidateViewer(t *testing.T) {
	c := Defaults()
	require.Equal(t, ViewerLite, c.Viewer)
	c.Viewer = ViewerPion
	require.NoError(t, c.Validate())
	c.Viewer = ""
	require.ErrorContains(t, c.Validate(), `viewer "": want lite or pion`)
	c.Viewer, c.Mode, c.Rooms = ViewerLite, ModeRooms, 2
	require.NoError(t, c.Validate(), "rooms mode has SDK viewers whatever the setting")
}
