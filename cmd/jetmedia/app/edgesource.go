package app

import (
	"context"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetmedia/jetmedia/pipeline/natsnode"
	"github.com/jetmedia/jetmedia/projections/presence"
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
	domain := n.hubDomain()
	region, err := jetstream.NewWithDomain(n.ctrl, domain)
	if err != nil {
		return err
	}
	n.region = region
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
			wait = n.checkEdgeSource(ctx, region, domain, edge)
		}
	}()
	return nil
}

// hubDomain is the region's JetStream domain, which an edge reaches over its link.
func (n *Node) hubDomain() string {
	if n.cfg.HubDomain != "" {
		return n.cfg.HubDomain
	}
	return natsnode.DefaultDomain
}

// catalog is WHEP's catalog of the rooms: the node's rooms bucket, and on an edge also the
// region's (edgecatalog.go).
func (n *Node) catalog() *catalog {
	cat := &catalog{kv: n.rooms, js: n.js}
	if n.region != nil {
		cat.region = newRegionCatalog(n.region, n.log)
	}
	return cat
}

// checkEdgeSource runs one check and returns the wait until the next.
func (n *Node) checkEdgeSource(ctx context.Context, region jetstream.JetStream, domain, edge string) time.Duration {
	attempt, cancel := context.WithTimeout(ctx, 5*time.Second)
	state, f, err := presence.KeepEdgeSourced(attempt, region, edge)
	cancel()
	switch {
	case state == presence.SourceForgotten:
		n.log.Error("the region forgot this edge: its events no longer reach the region's log, and the region ended its sessions there; "+
			"to rejoin, restart this edge with a fresh --data and another --js-domain (a new domain is a new edge to the region); "+
			"`jetmedia cluster unforget "+n.cfg.Name+" --domain "+edge+"` against the region undoes the forget for this domain", "region", domain, "domain", edge, "forgotten_by", f.By, "forgotten_at", f.At, "err", err)
		return edgeSourceCheck
	case err != nil:
		n.log.Debug("the region's log does not source this edge's yet", "domain", edge, "err", err)
		return edgeSourceRetry
	case state == presence.SourceAdded:
		n.log.Info("the region's log now sources this edge's", "region", domain, "domain", edge)
		return edgeSourceRetry // confirm it was not overwritten
	}
	return edgeSourceCheck
}
