package presence

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetmedia/jetmedia/pipeline/eventlog"
	"github.com/jetmedia/jetmedia/projections"
)

// BucketNodes is the KV bucket of node leases, one key per node name. It is a public contract
// (`jetmedia cluster` and the docs read it).
const BucketNodes = "nodes"

// recordMaxAge bounds how long the bucket keeps a lease nobody renews: long enough that
// `jetmedia cluster` shows a dead node for a day, short enough that renamed nodes fade away.
// Expiry of a lease is decided by its TTL, not by this.
const recordMaxAge = 24 * time.Hour

// Roles of a node, the values of Lease.Role.
const (
	// RoleFull runs JetStream and media.
	RoleFull = "full"
	// RoleMedia is a media-only node that uses the JetStream of the system it joins.
	RoleMedia = "media"
)

// Lease is a node's announcement: who it is, where to reach it, how loaded it is. It holds as
// long as the node renews it within TTL.
type Lease struct {
	Name string `json:"name"`
	Zone string `json:"zone,omitempty"`
	Role string `json:"role"`
	// HTTP is the base URL of the node's HTTP API (WHIP, WHEP, /rtc); UDP its ICE UDP port.
	HTTP string `json:"http,omitempty"`
	UDP  string `json:"udp,omitempty"`
	// NATS is its NATS client URL, when it has one open.
	NATS string `json:"nats,omitempty"`
	Load Load   `json:"load"`
	// MaxSessions is the node's admission limit (--max-sessions; 0: none).
	MaxSessions int `json:"max_sessions,omitempty"`
	// Started is when this process started; Renewed when it wrote this record (its clock).
	Started time.Time `json:"started"`
	Renewed time.Time `json:"renewed"`
	// TTL is how long after Renewed the lease holds.
	TTL time.Duration `json:"ttl"`
}

// Load is what a node carries, for placement and operators.
type Load struct {
	// Sessions is the number of live WebRTC sessions (every transport).
	Sessions int `json:"sessions"`
	// CPU is the cores the process kept busy since the previous renewal (Go's estimate).
	CPU float64 `json:"cpu"`
	// EgressBitrate is the bit rate of the RTP sent to viewers since the previous renewal.
	EgressBitrate uint64 `json:"egress_bps"`
}

// BucketConfig is the declaration of the nodes bucket.
func BucketConfig(sc eventlog.StorageConfig) jetstream.KeyValueConfig {
	return eventlog.LeaseBucketConfig(BucketNodes, "jetmedia node leases: who is up, where, how loaded", recordMaxAge, sc)
}

// Declare creates or updates the nodes bucket.
func Declare(ctx context.Context, js jetstream.JetStream, sc eventlog.StorageConfig) (jetstream.KeyValue, error) {
	return eventlog.DeclareBucket(ctx, js, BucketConfig(sc))
}

// Observed is a lease as one reader saw it: the record and when it was last renewed, by the
// reader's reckoning (see Table).
type Observed struct {
	Lease
	// Revision of the record in the bucket.
	Revision uint64
	// Age is how long ago the lease was last renewed.
	Age time.Duration
}

// Expired reports whether the lease no longer holds.
func (o Observed) Expired() bool { return o.Age > o.TTL }

// Table tracks leases over time. A lease's age is measured from when this reader saw its
// revision change, not from the writer's clock, so clocks that disagree between machines do
// not kill a node; a record seen for the first time is aged from the time the bucket stored it.
type Table struct {
	seen map[string]seen
}

type seen struct {
	rev uint64
	at  time.Time
}

// NewTable returns an empty table.
func NewTable() *Table { return &Table{seen: map[string]seen{}} }

// Observe folds one read of the bucket (every current entry) taken at now and returns the
// leases sorted by name.
func (t *Table) Observe(now time.Time, entries []jetstream.KeyValueEntry) ([]Observed, error) {
	out := make([]Observed, 0, len(entries))
	present := make(map[string]bool, len(entries))
	var errs []error
	for _, e := range entries {
		var l Lease
		if err := json.Unmarshal(e.Value(), &l); err != nil {
			errs = append(errs, fmt.Errorf("presence: lease %s: %w", e.Key(), err))
			continue
		}
		s, ok := t.seen[e.Key()]
		if !ok {
			s = seen{rev: e.Revision(), at: e.Created()}
		} else if s.rev != e.Revision() {
			s = seen{rev: e.Revision(), at: now}
		}
		t.seen[e.Key()] = s
		present[e.Key()] = true
		out = append(out, Observed{Lease: l, Revision: e.Revision(), Age: max(now.Sub(s.at), 0)})
	}
	for k := range t.seen {
		if !present[k] {
			delete(t.seen, k)
		}
	}
	slices.SortFunc(out, func(a, b Observed) int { return strings.Compare(a.Name, b.Name) })
	return out, errors.Join(errs...)
}

// Forgive restarts every lease's age at now. A reader calls it when the bucket itself stalled
// (its own renewal failed or was slow, as while the bucket elects a new leader): nobody could
// renew meanwhile, so the silence says nothing about the other nodes.
func (t *Table) Forgive(now time.Time) {
	for k, s := range t.seen {
		s.at = now
		t.seen[k] = s
	}
}

// ReadAll returns every lease record of the bucket.
func ReadAll(ctx context.Context, kv jetstream.KeyValue) ([]jetstream.KeyValueEntry, error) {
	var out []jetstream.KeyValueEntry
	err := projections.ReadInitial(ctx, kv, jetstream.AllKeys, func() { out = nil }, func(e jetstream.KeyValueEntry) error {
		out = append(out, e)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("presence: read leases: %w", err)
	}
	return out, nil
}

// List reads the bucket once and returns the leases aged from when the bucket stored them
// (for a one-shot reader such as `jetmedia cluster`).
func List(ctx context.Context, kv jetstream.KeyValue, now time.Time) ([]Observed, error) {
	entries, err := ReadAll(ctx, kv)
	if err != nil {
		return nil, err
	}
	return NewTable().Observe(now, entries)
}
