package eventlog

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// A stream update carries the stream's whole config and JetStream has no compare-and-set for
// it: two writers that read the sources and write them back at once lose one of the changes,
// and a lost change can drop another edge's source. The writers of the EVENTS stream's
// sources (AddEdgeSource, RemoveEdgeSource, RestartEdgeSource) take turns on one key of
// BucketSourcesLock and re-read the config once they hold it.
const (
	sourcesLockKey = "lock"
	// sourcesLockTTL frees the lock of a writer that died holding it.
	sourcesLockTTL = 30 * time.Second
	// sourcesLockHold bounds a writer's work under the lock, well inside sourcesLockTTL, so
	// that a slow writer cannot still be writing once the lock has expired.
	sourcesLockHold = 10 * time.Second
	// sourcesLockPoll is how often a writer that found the lock taken tries again: a holder
	// keeps it for a few requests.
	sourcesLockPoll = 50 * time.Millisecond
	// sourcesClockSkew is the clock difference between an edge and its region that
	// RestartEdgeSource allows for when it compares their times.
	sourcesClockSkew = time.Minute
)

// ErrSourcesLocked is returned when another writer held the lock on the sources of the
// region's EVENTS stream for as long as the caller's context allowed.
var ErrSourcesLocked = errors.New("pipeline: another writer holds the lock on the sources of " + StreamEvents)

// withSourcesLock runs update while it holds the lock on the region's EVENTS sources, on a
// context that ends within sourcesLockHold. events is the stream's config as last read: the
// lock's bucket, created on first use, gets its replicas and placement. holder names the
// writer in the lock's value, for whoever inspects a lock that stays taken.
func withSourcesLock(ctx context.Context, region jetstream.JetStream, events jetstream.StreamConfig, holder string,
	update func(ctx context.Context) error) error {
	kv, err := region.KeyValue(ctx, BucketSourcesLock)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		kv, err = region.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket:      BucketSourcesLock,
			Description: "jetmedia: one writer at a time of the sources of the " + StreamEvents + " stream",
			History:     1,
			Storage:     jetstream.FileStorage,
			Replicas:    max(events.Replicas, 1),
			Placement:   events.Placement,
			// Enables the per-key TTL the lock is taken with; the marker an expired lock
			// leaves goes after this.
			LimitMarkerTTL: time.Minute,
		})
	}
	if err != nil {
		return fmt.Errorf("pipeline: bucket %s: %w", BucketSourcesLock, err)
	}
	var rev uint64
	for {
		rev, err = kv.Create(ctx, sourcesLockKey, []byte(holder), jetstream.KeyTTL(sourcesLockTTL))
		if err == nil {
			break
		}
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return fmt.Errorf("pipeline: lock the sources of %s: %w", StreamEvents, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: %w", ErrSourcesLocked, ctx.Err())
		case <-time.After(sourcesLockPoll):
		}
	}
	hold, cancel := context.WithTimeout(ctx, sourcesLockHold)
	err = update(hold)
	cancel()
	// The release may fail (link down, ctx over); the lock's TTL frees it then, and the
	// revision makes sure it is ours that goes, not a later holder's.
	release, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	_ = kv.Delete(release, sourcesLockKey, jetstream.LastRevision(rev))
	cancel()
	return err
}

// edgeSourceIndex is the index in cfg.Sources of the edge's log whose domain is edgeDomain,
// or -1.
func edgeSourceIndex(cfg jetstream.StreamConfig, edgeDomain string) int {
	prefix := "$JS." + edgeDomain + ".API"
	return slices.IndexFunc(cfg.Sources, func(src *jetstream.StreamSource) bool {
		return src.Name == StreamEvents && src.External != nil && src.External.APIPrefix == prefix
	})
}

// edgeSourceInfo is the state of the region's copying of the edge's log, from the stream's
// info, or nil.
func edgeSourceInfo(info *jetstream.StreamInfo, edgeDomain string) *jetstream.StreamSourceInfo {
	for _, si := range info.Sources {
		if si != nil {
			if d, ok := EdgeSourceDomain(si.Name, si.External); ok && d == edgeDomain {
				return si
			}
		}
	}
	return nil
}

// sourceIdle reports whether the region has heard nothing from the edge's source for idle
// (its heartbeats come every second while it runs) or reports it failing.
func sourceIdle(si *jetstream.StreamSourceInfo, idle time.Duration) bool {
	return si.Error != nil || si.Active < 0 || si.Active >= idle
}

// RestartEdgeSource takes out and puts back, through region (a JetStream of the region's
// domain), the region's EVENTS source of the edge whose domain is edgeDomain, when the region
// has heard nothing from it for idle. An edge calls it when its link returns: nats-server
// retries a source it cannot reach with a backoff (after a 30 s cut the events arrived ~28 s
// after the heal), and a source put back starts at once.
//
// A source put back resumes where it stopped, so each event is copied once and in the edge's
// order: nats-server finds its position from the newest copy in the region's log of an event
// of the edge (the Nats-Stream-Source header), and skips what it copied already. That newest
// copy must still be there: RestartEdgeSource does nothing (false, nil) unless the region's
// log dropped no event, or its oldest event is older than the edge's event the source copied
// last (read from edge, the edge's own JetStream, allowing for sourcesClockSkew). It returns
// whether it restarted the source; a missing source is left to AddEdgeSource.
func RestartEdgeSource(ctx context.Context, region, edge jetstream.JetStream, edgeDomain string, idle time.Duration) (bool, error) {
	s, err := region.Stream(ctx, StreamEvents)
	if err != nil {
		return false, fmt.Errorf("pipeline: the region's %s: %w", StreamEvents, err)
	}
	if si := edgeSourceInfo(s.CachedInfo(), edgeDomain); si == nil || !sourceIdle(si, idle) {
		return false, nil
	}
	restarted := false
	err = withSourcesLock(ctx, region, s.CachedInfo().Config, edgeDomain+" restarts its source", func(ctx context.Context) error {
		s, err := region.Stream(ctx, StreamEvents) // what it is now that this is the only writer
		if err != nil {
			return fmt.Errorf("pipeline: the region's %s: %w", StreamEvents, err)
		}
		info := s.CachedInfo()
		i, si := edgeSourceIndex(info.Config, edgeDomain), edgeSourceInfo(info, edgeDomain)
		if i < 0 || si == nil || !sourceIdle(si, idle) {
			return nil
		}
		if ok, err := positionKept(ctx, info, si, edge); err != nil || !ok {
			return err
		}
		src := info.Config.Sources[i]
		out := info.Config
		out.Sources = slices.Delete(slices.Clone(out.Sources), i, i+1)
		s, err = region.UpdateStream(ctx, out)
		if err != nil {
			return fmt.Errorf("pipeline: take out the source of edge %s from the region's %s: %w", edgeDomain, StreamEvents, err)
		}
		// Put it back now, with the config the update returned: nobody else writes it while
		// the lock is held. Until it is back the edge's events do not reach the region; an
		// edge whose source stays out adds it again (AddEdgeSource).
		back := s.CachedInfo().Config
		back.Sources = append(slices.Clone(back.Sources), src)
		if err := Retry(ctx, func(ctx context.Context) error {
			_, err := region.UpdateStream(ctx, back)
			return err
		}); err != nil {
			return fmt.Errorf("pipeline: put back the source of edge %s into the region's %s: %w", edgeDomain, StreamEvents, err)
		}
		restarted = true
		return nil
	})
	return restarted, err
}

// positionKept reports whether the region's log, of which info is the state, still holds the
// copy nats-server will find the edge's source's position from once the source is put back;
// si is the source's state there.
func positionKept(ctx context.Context, info *jetstream.StreamInfo, si *jetstream.StreamSourceInfo, edge jetstream.JetStream) (bool, error) {
	if info.State.FirstSeq <= 1 {
		// Nothing dropped (EVENTS denies deletes and purges): the newest copy is there, or
		// none was ever made and the source starts from the edge's first event.
		return true, nil
	}
	if si.Seq == 0 {
		// The region does not say where the source is: it would start at the region's
		// newest event's time and skip the edge's older ones.
		return false, nil
	}
	s, err := edge.Stream(ctx, StreamEvents)
	if err != nil {
		return false, fmt.Errorf("pipeline: the edge's %s: %w", StreamEvents, err)
	}
	m, err := s.GetMsg(ctx, si.Seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("pipeline: the edge's %s event %d: %w", StreamEvents, si.Seq, err)
	}
	// The copy was stored in the region after the edge stored the event; the region's log
	// drops its oldest events first.
	return info.State.FirstTime.Before(m.Time.Add(-sourcesClockSkew)), nil
}
