package eventlog

import (
	"context"
	"fmt"
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
		// Keys of peers, tracks and subscriptions that ended are purged with a marker that
		// expires (projections use jetstream.PurgeTTL(RoomsMarkerTTL)): a plain delete
		// marker would stay forever, one per peer, track and subscription the room ever had,
		// and JetStream keeps every subject of a stream in memory.
		LimitMarkerTTL: RoomsMarkerTTL,
	}
}

// Declare creates or updates the stream and buckets jetmedia needs. It is safe to call on every
// start and from every node.
func Declare(ctx context.Context, js jetstream.JetStream, sc StorageConfig) error {
	if err := Retry(ctx, func(ctx context.Context) error {
		_, err := js.CreateOrUpdateStream(ctx, EventsStreamConfig(sc))
		return err
	}); err != nil {
		return fmt.Errorf("pipeline: declare stream %s: %w", StreamEvents, err)
	}
	if err := Retry(ctx, func(ctx context.Context) error {
		_, err := js.CreateOrUpdateKeyValue(ctx, RoomsBucketConfig(BucketRooms, sc))
		return err
	}); err != nil {
		return fmt.Errorf("pipeline: declare bucket %s: %w", BucketRooms, err)
	}
	return nil
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
