package loadgen

import (
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/prometheus/common/expfmt"
)

// metricStages is the server's histogram of its forward path's stages (jetmedia's
// pipeline/stagetime, on /metrics).
const metricStages = "jetmedia_forward_stage_seconds"

// stageCounts are one scrape's cumulative bucket counts of each stage: upper bound (seconds)
// to count, and the total.
type stageCounts map[string]struct {
	bounds []float64
	cum    []uint64
	count  uint64
}

// parseStages reads the stage histogram from a scrape in the Prometheus text format; a
// server without it gives none.
func parseStages(in io.Reader) (stageCounts, error) {
	var p expfmt.TextParser
	families, err := p.TextToMetricFamilies(in)
	if err != nil {
		return nil, fmt.Errorf("load: metrics: %w", err)
	}
	out := stageCounts{}
	f, ok := families[metricStages]
	if !ok {
		return out, nil
	}
	for _, m := range f.GetMetric() {
		h := m.GetHistogram()
		if h == nil {
			continue
		}
		stage := ""
		for _, l := range m.GetLabel() {
			if l.GetName() == "stage" {
				stage = l.GetValue()
			}
		}
		e := out[stage]
		for _, b := range h.GetBucket() {
			e.bounds = append(e.bounds, b.GetUpperBound())
			e.cum = append(e.cum, b.GetCumulativeCount())
		}
		e.count = h.GetSampleCount()
		out[stage] = e
	}
	return out, nil
}

// scrapeStages reads the server's stage histogram from url's /metrics.
func scrapeStages(ctx context.Context, hc *http.Client, baseURL string) (stageCounts, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(baseURL, "/")+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "text/plain;version=0.0.4")
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("load: metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("load: metrics: status %d", resp.StatusCode)
	}
	return parseStages(io.LimitReader(resp.Body, 16<<20))
}

// StageQuantiles is one stage of the server's forward path during the hold: the number of
// observations and bucket upper bounds (powers of two of microseconds, so at most twice the
// true value) of the median and the 99th percentile, in milliseconds; -1 beyond the last
// finite bucket.
type StageQuantiles struct {
	Count uint64  `json:"count"`
	P50   float64 `json:"p50_at_most"`
	P99   float64 `json:"p99_at_most"`
}

// stageDelta is what each stage observed between two scrapes.
func stageDelta(before, after stageCounts) map[string]StageQuantiles {
	if len(after) == 0 {
		return nil
	}
	out := map[string]StageQuantiles{}
	for stage, a := range after {
		b := before[stage]
		cum := make([]uint64, len(a.cum))
		for i := range a.cum {
			cum[i] = a.cum[i]
			if i < len(b.cum) && b.bounds[i] == a.bounds[i] {
				cum[i] -= min(b.cum[i], a.cum[i])
			}
		}
		n := a.count - min(b.count, a.count)
		q := func(p float64) float64 { // the bucket holding the ceil(p*n)-th observation
			rank := max(uint64(math.Ceil(p*float64(n))), 1)
			i := sort.Search(len(cum), func(i int) bool { return cum[i] >= rank })
			if i == len(cum) || math.IsInf(a.bounds[i], 1) {
				return -1 // beyond the last finite bucket
			}
			return a.bounds[i] * 1000
		}
		if n == 0 {
			out[stage] = StageQuantiles{}
			continue
		}
		out[stage] = StageQuantiles{Count: n, P50: q(0.5), P99: q(0.99)}
	}
	return out
}
