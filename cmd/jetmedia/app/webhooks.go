package app

import (
	"context"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/jetmedia/jetmedia/egress/webhook"
)

// startWebhooks delivers the log to the configured webhook endpoints (none: nothing runs) and
// adds their counters to the node's metrics.
func (n *Node) startWebhooks(ctx context.Context) error {
	if len(n.cfg.Webhooks.Endpoints) == 0 {
		return nil
	}
	cfg := n.cfg.Webhooks
	cfg.Logger = n.log
	d, err := webhook.Start(ctx, n.js, cfg)
	if err != nil {
		return err
	}
	n.webhooks = d
	for _, ep := range cfg.Endpoints {
		n.log.Info("delivering events by webhook", "endpoint", ep.String(), "consumer", ep.Durable())
	}
	if n.metrics != nil {
		n.metrics.reg.MustRegister(webhookCollector{d})
	}
	return nil
}

// closeWebhooks stops delivery; events in flight are delivered again on the next start.
func (n *Node) closeWebhooks() {
	if n.webhooks != nil {
		n.webhooks.Close()
	}
}

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

// webhookCollector reads the deliverer's counters at scrape time.
type webhookCollector struct{ d *webhook.Deliverer }

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
