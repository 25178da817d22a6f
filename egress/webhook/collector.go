package webhook

import "github.com/prometheus/client_golang/prometheus"

var (
	descHookDelivered = prometheus.NewDesc("jetmedia_webhook_delivered_total",
		"Events a webhook endpoint accepted (2xx).", []string{"endpoint"}, nil)
	descHookFailed = prometheus.NewDesc("jetmedia_webhook_failed_attempts_total",
		"Webhook requests that failed (non-2xx, timeout, connection error) and were retried or led to parking.", []string{"endpoint"}, nil)
	descHookParked = prometheus.NewDesc("jetmedia_webhook_parked_total",
		"Events parked in WEBHOOKS_PARKED after their last attempt.", []string{"endpoint"}, nil)
	descHookQueued = prometheus.NewDesc("jetmedia_webhook_queued",
		"Events taken from the log for an endpoint and not yet delivered or parked.", []string{"endpoint"}, nil)
	descHookCircuitOpen = prometheus.NewDesc("jetmedia_webhook_circuit_open",
		"1 while the endpoint's circuit breaker is open or probing (receiver down: no lane sends, nothing parks), else 0.", []string{"endpoint"}, nil)
	descHookCircuitOpens = prometheus.NewDesc("jetmedia_webhook_circuit_opened_total",
		"Times the endpoint's circuit breaker opened.", []string{"endpoint"}, nil)
)

// Collector reads the deliverer's counters at scrape time, for the node's Prometheus registry.
func (d *Deliverer) Collector() prometheus.Collector { return webhookCollector{d} }

type webhookCollector struct{ d *Deliverer }

func (webhookCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descHookDelivered
	ch <- descHookFailed
	ch <- descHookParked
	ch <- descHookQueued
	ch <- descHookCircuitOpen
	ch <- descHookCircuitOpens
}

func (c webhookCollector) Collect(ch chan<- prometheus.Metric) {
	for _, s := range c.d.Stats() {
		ch <- prometheus.MustNewConstMetric(descHookDelivered, prometheus.CounterValue, float64(s.Delivered), s.URL)
		ch <- prometheus.MustNewConstMetric(descHookFailed, prometheus.CounterValue, float64(s.FailedAttempts), s.URL)
		ch <- prometheus.MustNewConstMetric(descHookParked, prometheus.CounterValue, float64(s.Parked), s.URL)
		ch <- prometheus.MustNewConstMetric(descHookQueued, prometheus.GaugeValue, float64(s.Queued), s.URL)
		open := 0.0
		if s.CircuitOpen {
			open = 1
		}
		ch <- prometheus.MustNewConstMetric(descHookCircuitOpen, prometheus.GaugeValue, open, s.URL)
		ch <- prometheus.MustNewConstMetric(descHookCircuitOpens, prometheus.CounterValue, float64(s.CircuitOpens), s.URL)
	}
}
