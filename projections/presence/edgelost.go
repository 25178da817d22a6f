package presence

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetmedia/jetmedia/pipeline/eventlog"
)

// EdgeLost is an operator's standing decision (`--edge-lost-after`): an edge whose log the
// region has not heard from for After is dead, and is forgotten as `jetmedia cluster forget`
// forgets it (Forget: its sessions ended in the region's log with the events of a lease lapse,
// its log no longer sourced, a record in the forgotten edges). The region cannot tell a dead
// edge from one cut off for that long: an edge cut off past After is forgotten too, and stays
// out of the region's sources until unforgotten. Off (After 0) by default.
//
// It runs on every region node and acts on the designated one only (the live node of the
// region with the smallest name, as for lost nodes): a check reads the region's EVENTS stream
// info once (its sources' last activity), every After/4 (1 s at least).
type EdgeLost struct {
	// Region is the region's JetStream; Node this node's name (the writer of the ends).
	Region jetstream.JetStream
	Node   string
	After  time.Duration
	// Designated reports whether this node is the one to act now.
	Designated func() bool
	Logger     *slog.Logger

	badSince map[string]time.Time // edge domain → when a check first found its source failing
}

// Run checks until ctx ends.
func (e *EdgeLost) Run(ctx context.Context) {
	tick := time.NewTicker(max(e.After/4, time.Second))
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if !e.Designated() {
			e.badSince = nil // another node judges; a later turn starts afresh
			continue
		}
		if err := e.check(ctx, time.Now()); err != nil && ctx.Err() == nil {
			e.logger().Warn("edges: checking for edges silent past --edge-lost-after", "err", err)
		}
	}
}

func (e *EdgeLost) logger() *slog.Logger {
	if e.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return e.Logger
}

// check forgets the edges whose source has been silent for After.
func (e *EdgeLost) check(ctx context.Context, now time.Time) error {
	s, err := e.Region.Stream(ctx, eventlog.StreamEvents)
	if err != nil {
		return fmt.Errorf("presence: the region's %s: %w", eventlog.StreamEvents, err)
	}
	if e.badSince == nil {
		e.badSince = map[string]time.Time{}
	}
	var errs []error
	for _, si := range s.CachedInfo().Sources {
		if si == nil {
			continue
		}
		domain, ok := eventlog.EdgeSourceDomain(si.Name, si.External)
		if !ok {
			continue
		}
		if silent := e.silentFor(domain, si, now); silent >= e.After {
			errs = append(errs, e.forget(ctx, domain, silent))
		}
	}
	return errors.Join(errs...)
}

// silentFor is how long the region has not heard from the edge's source: its last activity,
// or, while the server reports it failing or never active, since a check first saw that.
func (e *EdgeLost) silentFor(domain string, si *jetstream.StreamSourceInfo, now time.Time) time.Duration {
	if si.Error == nil && si.Active >= 0 {
		delete(e.badSince, domain)
		return si.Active
	}
	since, ok := e.badSince[domain]
	if !ok {
		since = now
		e.badSince[domain] = now
	}
	return now.Sub(since)
}

// forget forgets the edge of domain, silent for silent.
func (e *EdgeLost) forget(ctx context.Context, domain string, silent time.Duration) error {
	node := EdgeNodeOf(domain)
	if node == "" {
		node = domain // a --js-domain that does not name its node: the lease check lists the domain
	}
	res, err := Forget(ctx, e.Region, ForgetRequest{Node: node, Domain: domain, Writer: e.Node,
		By: fmt.Sprintf("%s: silent %v, past --edge-lost-after %v", e.Node, silent.Round(time.Second), e.After)})
	switch {
	case errors.Is(err, ErrEdgeLive):
		e.logger().Info("edges: an edge's log is silent but its lease holds; not forgotten", "domain", domain, "silent", silent.Round(time.Millisecond), "err", err)
		return nil
	case err != nil:
		return fmt.Errorf("presence: forget edge %s: %w", domain, err)
	}
	delete(e.badSince, domain)
	e.logger().Warn("edges: forgot an edge whose log was silent past --edge-lost-after: its sessions are ended in the log; it stays out until `jetmedia cluster unforget`",
		"domain", domain, "silent", silent.Round(time.Millisecond), "sessions_ended", res.Ended, "rooms", res.Rooms, "lease", res.Lease)
	return nil
}
