package projector

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetmedia/jetmedia/pipeline/eventlog"
)

// Bucket is the KV bucket of projection leases, one key per projection (KeyRooms). It is a
// public contract (`jetmedia cluster` and the docs name it).
const Bucket = "projectors"

// KeyRooms is the lease of the rooms projection.
const KeyRooms = "rooms"

// recordMaxAge bounds how long the bucket keeps a lease nobody renews or releases. Expiry of
// a lease is decided by its TTL, as its readers reckon it, not by this.
const recordMaxAge = time.Hour

// BucketConfig is the declaration of the projectors bucket.
func BucketConfig(sc eventlog.StorageConfig) jetstream.KeyValueConfig {
	return eventlog.LeaseBucketConfig(Bucket, "jetmedia projection leases: which node writes each projection", recordMaxAge, sc)
}

// Declare creates or updates the projectors bucket.
func Declare(ctx context.Context, js jetstream.JetStream, sc eventlog.StorageConfig) (jetstream.KeyValue, error) {
	return eventlog.DeclareBucket(ctx, js, BucketConfig(sc))
}

// Record is what a lease key holds.
type Record struct {
	// Node holds the lease; Process is its process (a node's next process takes the lease of
	// its previous one at once).
	Node    string `json:"node"`
	Process string `json:"process"`
	// Since is when the holder took the lease, Renewed when it last wrote it (its clock).
	Since   time.Time `json:"since"`
	Renewed time.Time `json:"renewed"`
	// TTL is how long the lease holds without renewal.
	TTL time.Duration `json:"ttl"`
}

// Timing sets a lease's rhythm.
type Timing struct {
	// Renew is how often the holder rewrites its lease (standbys read it twice as often).
	Renew time.Duration
	// TTL is how long a lease holds without renewal: a standby takes it over when it has not
	// seen it change for this long.
	TTL time.Duration
}

// DefaultTiming is the nodes' lease rhythm (presence's defaults): renewed every 2 s, lost
// after 8 s.
func DefaultTiming() Timing { return Timing{Renew: 2 * time.Second, TTL: 8 * time.Second} }

// Validate reports a timing that cannot work.
func (t Timing) Validate() error {
	if t.Renew <= 0 {
		return fmt.Errorf("projector: renew %v must be positive", t.Renew)
	}
	if t.TTL < 2*t.Renew {
		return fmt.Errorf("projector: lease TTL %v is under two renewals (%v each)", t.TTL, t.Renew)
	}
	return nil
}

// fence is how long after sending a renewal that succeeded the holder may go on without a
// further one. A standby takes the lease no sooner than TTL after it saw that renewal stored,
// which is after it was sent; the quarter left is for the projection to stop.
func (t Timing) fence() time.Duration { return t.TTL * 3 / 4 }

// watch ages the lease record another node holds, by the reader's clock: from when the
// reader saw its revision change (or first saw it), so that clocks disagreeing between
// machines never make a live holder look dead. It is a sans-IO core: the caller passes now.
type watch struct {
	rev uint64
	at  time.Time
}

// observe notes a read of revision rev at now and returns how long the record has stood.
func (w *watch) observe(now time.Time, rev uint64) time.Duration {
	if w.rev != rev || w.at.IsZero() {
		w.rev, w.at = rev, now
	}
	return max(now.Sub(w.at), 0)
}

// forgive restarts the age at now: the reader could not read (or read slowly), so the holder
// may not have been able to renew either; a silence the reader shared says nothing.
func (w *watch) forgive(now time.Time) {
	if !w.at.IsZero() {
		w.at = now
	}
}

// isLost reports whether a renewal failed because another node holds the key now, or it was
// released (a conditional write that can never succeed at this revision).
func isLost(err error) bool {
	return errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyExists) ||
		errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted)
}

// decodeRecord reads a lease record; one that does not decode is held by nobody known.
func decodeRecord(b []byte) Record {
	var r Record
	if err := json.Unmarshal(b, &r); err != nil {
		return Record{}
	}
	return r
}
