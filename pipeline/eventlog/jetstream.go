package eventlog

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// StorageConfig sets the retention of the event log. Zero values keep history forever.
type StorageConfig struct {
	// MaxAge drops events older than this; 0 keeps them.
	MaxAge time.Duration
	// MaxBytes caps the event stream's size; 0 or less is unlimited.
	MaxBytes int64
	// Replicas of the stream and buckets inside one cluster (1 on a single node).
	Replicas int
	// Region is the cluster (a region of a supercluster) the stream and buckets are placed
	// in; "" places them where the declaring node's JetStream puts them (its own cluster).
	Region string
}

// Placement is where sc places a stream or bucket: in Region, or nil for the server's choice.
func (sc StorageConfig) Placement() *jetstream.Placement {
	if sc.Region == "" {
		return nil
	}
	return &jetstream.Placement{Cluster: sc.Region}
}

// EventsStreamConfig is the declaration of the EVENTS stream.
func EventsStreamConfig(sc StorageConfig) jetstream.StreamConfig {
	maxBytes := sc.MaxBytes
	if maxBytes <= 0 {
		maxBytes = -1
	}
	return jetstream.StreamConfig{
		Name:        StreamEvents,
		Description: "jetmedia event log: every room's typed, versioned events",
		Subjects:    []string{EventsSubjects},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		MaxAge:      sc.MaxAge,
		MaxBytes:    maxBytes,
		Replicas:    max(sc.Replicas, 1),
		Placement:   sc.Placement(),
		Duplicates:  2 * time.Minute,
		AllowDirect: true,
		DenyDelete:  true,
		DenyPurge:   true,
	}
}

// RoomsMarkerTTL is how long the rooms bucket keeps the marker of a removed key. The node's
// own watchers follow the bucket in real time; a watch started later does not see the key at
// all, which is what it should see. A watcher more than this far behind would miss the
// removal.
const RoomsMarkerTTL = time.Minute

// RoomsBucketConfig is the declaration of a rooms projection bucket.
func RoomsBucketConfig(bucket string, sc StorageConfig) jetstream.KeyValueConfig {
	return jetstream.KeyValueConfig{
		Bucket:      bucket,
		Description: "jetmedia room state projected from the EVENTS stream",
		History:     1,
		Storage:     jetstream.FileStorage,
		Replicas:    max(sc.Replicas, 1),
		Placement:   sc.Placement(),
		// Keys of peers, tracks and subscriptions that ended are purged with a marker that
		// expires (projections use jetstream.PurgeTTL(RoomsMarkerTTL)): a plain delete
		// marker would stay forever, one per peer, track and subscription the room ever had,
		// and JetStream keeps every subject of a stream in memory.
		LimitMarkerTTL: RoomsMarkerTTL,
	}
}

// SnapshotsMarkerTTL is how long the snapshots bucket keeps the marker of a key that
// retention deleted: nothing watches the bucket, the markers only have to go.
const SnapshotsMarkerTTL = time.Minute

// SnapshotsBucketConfig is the declaration of the snapshots bucket: one key per snapshot (or
// per part of a large one), kept until retention deletes it (docs/snapshots.md).
func SnapshotsBucketConfig(sc StorageConfig) jetstream.KeyValueConfig {
	return jetstream.KeyValueConfig{
		Bucket:      BucketSnapshots,
		Description: "jetmedia room snapshots: folded room state at a log sequence, with the chain head there",
		History:     1,
		Storage:     jetstream.FileStorage,
		Replicas:    max(sc.Replicas, 1),
		Placement:   sc.Placement(),
		// Deleted keys are purged with a marker that expires (projections use
		// jetstream.PurgeTTL(SnapshotsMarkerTTL)), or a marker per snapshot ever deleted would
		// stay in the stream's subjects for ever.
		LimitMarkerTTL: SnapshotsMarkerTTL,
	}
}

// Declare creates or updates the stream and buckets jetmedia needs. It is safe to call on every
// start and from every node.
func Declare(ctx context.Context, js jetstream.JetStream, sc StorageConfig) error {
	if err := Retry(ctx, func(ctx context.Context) error {
		cfg := EventsStreamConfig(sc)
		if s, err := js.Stream(ctx, StreamEvents); err == nil {
			// The edges' logs the region sources (AddEdgeSource) stay.
			cfg.Sources = s.CachedInfo().Config.Sources
		}
		_, err := js.CreateOrUpdateStream(ctx, cfg)
		return err
	}); err != nil {
		return fmt.Errorf("pipeline: declare stream %s: %w", StreamEvents, err)
	}
	if _, err := DeclareBucket(ctx, js, RoomsBucketConfig(BucketRooms, sc)); err != nil {
		return err
	}
	_, err := DeclareBucket(ctx, js, SnapshotsBucketConfig(sc))
	return err
}

// DeclareBucket creates or updates a KV bucket, retrying (Retry) while JetStream cannot
// answer yet.
func DeclareBucket(ctx context.Context, js jetstream.JetStream, cfg jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	var kv jetstream.KeyValue
	err := Retry(ctx, func(ctx context.Context) (err error) {
		kv, err = js.CreateOrUpdateKeyValue(ctx, cfg)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("pipeline: declare bucket %s: %w", cfg.Bucket, err)
	}
	return kv, nil
}

// LeaseBucketConfig is the declaration of a bucket of leases (the nodes' presence, the
// projections' writers): the newest record of each key, kept for maxAge when nobody renews
// or releases it (a lease's expiry is its TTL as its readers reckon it, not this), with the
// log's replicas and placement.
func LeaseBucketConfig(bucket, description string, maxAge time.Duration, sc StorageConfig) jetstream.KeyValueConfig {
	return jetstream.KeyValueConfig{
		Bucket:      bucket,
		Description: description,
		History:     1,
		TTL:         maxAge,
		Storage:     jetstream.FileStorage,
		Replicas:    max(sc.Replicas, 1),
		Placement:   sc.Placement(),
	}
}

// Retry runs a JetStream declaration in short attempts until it succeeds or ctx ends, and
// returns the last attempt's error. A node that just joined a system may not reach JetStream
// yet (leaf link coming up, cluster electing its meta leader), a request sent before the
// cluster has a meta leader may get no answer at all, and a replicated asset cannot be placed
// until enough servers have joined.
func Retry(ctx context.Context, declare func(ctx context.Context) error) error {
	for {
		attempt, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := declare(attempt)
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// EdgeSourced reports whether the region's EVENTS stream (reached through region, a JetStream
// of the region's domain) sources the EVENTS stream of the edge whose domain is edgeDomain.
func EdgeSourced(ctx context.Context, region jetstream.JetStream, edgeDomain string) (bool, error) {
	s, err := region.Stream(ctx, StreamEvents)
	if err != nil {
		return false, fmt.Errorf("pipeline: the region's %s: %w", StreamEvents, err)
	}
	return hasEdgeSource(s.CachedInfo().Config, edgeDomain), nil
}

func hasEdgeSource(cfg jetstream.StreamConfig, edgeDomain string) bool {
	return edgeSourceIndex(cfg, edgeDomain) >= 0
}

// AddEdgeSource makes the region's EVENTS stream source the EVENTS stream of the edge whose
// JetStream domain is edgeDomain: the edge appends to its own log, also while its link is
// down, and JetStream copies its events into the region's log in the edge's order, resuming
// where it stopped when the link returns (a source's position is the region's, so each event
// is copied once; the events' ids are deduplicated besides). It returns false when the
// source was already there. It writes the stream's config under the sources' lock
// (withSourcesLock); a region node that declares the stream (Declare) does not take it, and
// may overwrite the update: callers check again later (EdgeSourced).
func AddEdgeSource(ctx context.Context, region jetstream.JetStream, edgeDomain string) (bool, error) {
	s, err := region.Stream(ctx, StreamEvents)
	if err != nil {
		return false, fmt.Errorf("pipeline: the region's %s: %w", StreamEvents, err)
	}
	if hasEdgeSource(s.CachedInfo().Config, edgeDomain) {
		return false, nil
	}
	added := false
	err = withSourcesLock(ctx, region, s.CachedInfo().Config, edgeDomain+" adds its source", func(ctx context.Context) error {
		s, err := region.Stream(ctx, StreamEvents)
		if err != nil {
			return fmt.Errorf("pipeline: the region's %s: %w", StreamEvents, err)
		}
		cfg := s.CachedInfo().Config
		if hasEdgeSource(cfg, edgeDomain) {
			return nil
		}
		cfg.Sources = append(slices.Clone(cfg.Sources), &jetstream.StreamSource{Name: StreamEvents, Domain: edgeDomain})
		if _, err := region.UpdateStream(ctx, cfg); err != nil {
			return fmt.Errorf("pipeline: source edge %s into the region's %s: %w", edgeDomain, StreamEvents, err)
		}
		added = true
		return nil
	})
	return added, err
}

// EdgeSources lists the JetStream domains of the edges whose EVENTS stream the region's
// EVENTS stream (reached through region) sources, in the stream's order.
func EdgeSources(ctx context.Context, region jetstream.JetStream) ([]string, error) {
	s, err := region.Stream(ctx, StreamEvents)
	if err != nil {
		return nil, fmt.Errorf("pipeline: the region's %s: %w", StreamEvents, err)
	}
	var out []string
	for _, src := range s.CachedInfo().Config.Sources {
		if d, ok := EdgeSourceDomain(src.Name, src.External); ok {
			out = append(out, d)
		}
	}
	return out, nil
}

// EdgeSourceDomain is the JetStream domain of the edge a source of the region's EVENTS stream
// copies from (a source's name and external API, as its config and its state in the stream's
// info carry them); false for a source that is no edge's log.
func EdgeSourceDomain(name string, ext *jetstream.ExternalStream) (string, bool) {
	if name != StreamEvents || ext == nil {
		return "", false
	}
	d, ok := strings.CutPrefix(ext.APIPrefix, "$JS.")
	if ok {
		d, ok = strings.CutSuffix(d, ".API")
	}
	return d, ok && d != ""
}

// RemoveEdgeSource stops the region's EVENTS stream sourcing the EVENTS stream of the edge
// whose domain is edgeDomain; what it copied stays. It returns false when there was no such
// source. An edge re-adds itself (AddEdgeSource) unless it is told not to: callers record
// that first. It writes under the sources' lock, as AddEdgeSource.
func RemoveEdgeSource(ctx context.Context, region jetstream.JetStream, edgeDomain string) (bool, error) {
	s, err := region.Stream(ctx, StreamEvents)
	if err != nil {
		return false, fmt.Errorf("pipeline: the region's %s: %w", StreamEvents, err)
	}
	if !hasEdgeSource(s.CachedInfo().Config, edgeDomain) {
		return false, nil
	}
	removed := false
	err = withSourcesLock(ctx, region, s.CachedInfo().Config, edgeDomain+" is forgotten", func(ctx context.Context) error {
		s, err := region.Stream(ctx, StreamEvents)
		if err != nil {
			return fmt.Errorf("pipeline: the region's %s: %w", StreamEvents, err)
		}
		cfg := s.CachedInfo().Config
		if !hasEdgeSource(cfg, edgeDomain) {
			return nil
		}
		cfg.Sources = slices.DeleteFunc(slices.Clone(cfg.Sources), func(src *jetstream.StreamSource) bool {
			d, ok := EdgeSourceDomain(src.Name, src.External)
			return ok && d == edgeDomain
		})
		if _, err := region.UpdateStream(ctx, cfg); err != nil {
			return fmt.Errorf("pipeline: stop sourcing edge %s into the region's %s: %w", edgeDomain, StreamEvents, err)
		}
		removed = true
		return nil
	})
	return removed, err
}
