package app

import (
	"context"

	"github.com/jetmedia/jetmedia/egress/webhook"
)

// startWebhooks delivers the log to the configured webhook endpoints (none: nothing runs).
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
	return nil
}

// closeWebhooks stops delivery; events in flight are delivered again on the next start.
func (n *Node) closeWebhooks() {
	if n.webhooks != nil {
		n.webhooks.Close()
	}
}
