package app

import (
	"context"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetmedia/jetmedia/pipeline/eventlog"
	"github.com/jetmedia/jetmedia/pipeline/natsnode"
)

// edgeSourceCheck is how often an edge checks that the region's log sources its own: once a
// minute when it does, every 2 s until it does (the link may be down, the region's stream may
// have been recreated or another edge's concurrent update may have dropped it).
const (
	edgeSourceCheck = time.Minute
	edgeSourceRetry = 2 * time.Second
)

// startEdgeSource keeps the region's EVENTS stream sourcing this edge's, on an edge.
func (n *Node) startEdgeSource(ctx context.Context) error {
	if !n.srv.Edge() {
		return nil
	}
	domain := n.cfg.HubDomain
	if domain == "" {
		domain = natsnode.DefaultDomain
	}
	region, err := jetstream.NewWithDomain(n.ctrl, domain)
	if err != nil {
		return err
	}
	edge := n.srv.Domain()
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		for wait := time.Duration(0); ; {
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
			attempt, cancel := context.WithTimeout(ctx, 5*time.Second)
			added, err := eventlog.AddEdgeSource(attempt, region, edge)
			cancel()
			switch {
			case err != nil:
				n.log.Debug("the region's log does not source this edge's yet", "domain", edge, "err", err)
				wait = edgeSourceRetry
			case added:
				n.log.Info("the region's log now sources this edge's", "region", domain, "domain", edge)
				wait = edgeSourceRetry // confirm it was not overwritten
			default:
				wait = edgeSourceCheck
			}
		}
	}()
	return nil
}
