package loadgen

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"time"

	"github.com/prometheus/common/expfmt"

	"github.com/jetmedia/jetmedia/tests/rtcclient"
)

// The Prometheus process collector's metrics, which every Go server built on client_golang
// exposes (jetmedia's /metrics among them): CPU time in seconds (user + system) and the
// resident set in bytes.
const (
	metricCPU = "process_cpu_seconds_total"
	metricRSS = "process_resident_memory_bytes"
)

// parseProcessMetrics reads the process collector's CPU time and RSS from a scrape in the
// Prometheus text format.
func parseProcessMetrics(in io.Reader) (cpu time.Duration, rss int64, err error) {
	var p expfmt.TextParser
	families, err := p.TextToMetricFamilies(in)
	if err != nil {
		return 0, 0, fmt.Errorf("load: metrics: %w", err)
	}
	value := func(name string) (float64, error) {
		f, ok := families[name]
		if !ok || len(f.GetMetric()) != 1 {
			return 0, fmt.Errorf("load: metrics: no single %s (is the process collector registered?)", name)
		}
		m := f.GetMetric()[0]
		var v float64
		switch {
		case m.GetCounter() != nil:
			v = m.GetCounter().GetValue()
		case m.GetGauge() != nil:
			v = m.GetGauge().GetValue()
		case m.GetUntyped() != nil:
			v = m.GetUntyped().GetValue()
		default:
			return 0, fmt.Errorf("load: metrics: %s is a %s, want a counter or gauge", name, f.GetType())
		}
		if math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
			return 0, fmt.Errorf("load: metrics: %s = %v", name, v)
		}
		return v, nil
	}
	c, err1 := value(metricCPU)
	r, err2 := value(metricRSS)
	if err := errors.Join(err1, err2); err != nil {
		return 0, 0, err
	}
	return time.Duration(c * float64(time.Second)), int64(r), nil
}

// scrapeProcess samples the server's process through its metrics URL. The sample's time is
// when the answer arrived: the collector reads /proc while it answers.
func scrapeProcess(ctx context.Context, hc *http.Client, metricsURL string) (procSample, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, metricsURL, nil)
	if err != nil {
		return procSample{}, err
	}
	// The classic text format: what TextToMetricFamilies reads (not OpenMetrics, not protobuf).
	req.Header.Set("Accept", "text/plain;version=0.0.4")
	resp, err := hc.Do(req)
	if err != nil {
		return procSample{}, fmt.Errorf("load: metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return procSample{}, fmt.Errorf("load: metrics: %w", &rtcclient.HTTPError{Status: resp.StatusCode, Body: string(body)})
	}
	cpu, rss, err := parseProcessMetrics(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return procSample{}, err
	}
	return procSample{At: time.Now(), CPU: cpu, RSS: rss}, nil
}
