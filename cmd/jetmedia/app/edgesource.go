package app

import (
	"context"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetmedia/jetmedia/pipeline/eventlog"
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

// When an edge's link returns, the region's source of the edge's log may be waiting out
// nats-server's retry backoff (+10 s a failure, up to 2 min): a request it sent while the
// link was down waits 30 s for an answer before the next try. The edge looks at its own
// server for its link's state every edgeLinkPoll (this sends nothing), and edgeSourceIdle
// after the link returns it has the source restarted if the region has not heard from it
// since (eventlog.RestartEdgeSource): a source that survived the cut sends its heartbeats
// every second by then. An edge that starts counts as a link that returns.
const (
	edgeLinkPoll   = 250 * time.Millisecond
	edgeSourceIdle = 2 * time.Second
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
	n.wg.Go(func() { n.keepEdgeSource(ctx, region, domain, n.srv.Domain()) })
	return nil
}

// keepEdgeSource runs the edge's checks (checkEdgeSource) and restarts (restartEdgeSource)
// until ctx ends.
func (n *Node) keepEdgeSource(ctx context.Context, region jetstream.JetStream, domain, edge string) {
	check := time.NewTimer(0)
	defer check.Stop()
	poll := time.NewTicker(edgeLinkPoll)
	defer poll.Stop()
	linked := false
	var restart <-chan time.Time // nil unless a restart is due
	for {
		select {
		case <-ctx.Done():
			return
		case <-check.C:
			check.Reset(n.checkEdgeSource(ctx, region, domain, edge))
		case <-poll.C:
			up := n.srv.HubLinked()
			switch {
			case up && !linked:
				restart = time.After(edgeSourceIdle)
			case !up:
				restart = nil
			}
			linked = up
		case <-restart:
			restart = nil
			if n.restartEdgeSource(ctx, region, edge) {
				check.Reset(edgeSourceRetry) // confirm the source is back
			}
		}
	}
}

// restartEdgeSource has the region restart its source of this edge's log if it has not heard
// from it for edgeSourceIdle, and reports whether it did.
func (n *Node) restartEdgeSource(ctx context.Context, region jetstream.JetStream, edge string) bool {
	start := time.Now()
	attempt, cancel := context.WithTimeout(ctx, 15*time.Second)
	restarted, err := eventlog.RestartEdgeSource(attempt, region, n.js, edge, edgeSourceIdle)
	cancel()
	switch {
	case err != nil && ctx.Err() == nil:
		n.log.Warn("the link returned but the region's source of this edge's log could not be restarted: it retries on its own, up to 2 min later",
			"domain", edge, "err", err)
	case restarted:
		n.log.Info("the link returned and the region had not heard from this edge's log since: restarted its source",
			"domain", edge, "took", time.Since(start).Round(time.Millisecond))
	}
	return restarted || err != nil // after an error too: a source taken out may not be back
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
