package projections

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/jetmedia/jetmedia/events"
)

// AuditModelName is the audit index's key prefix and consumer name.
const AuditModelName = "audit"

// AuditRef is what the audit index keeps of one event: enough to list it and to fetch it from
// the log by its stream sequence.
type AuditRef struct {
	Time     time.Time `json:"time"`
	Room     string    `json:"room"`
	Seq      uint64    `json:"seq"`
	ID       string    `json:"id"`
	Type     string    `json:"type"`
	Identity string    `json:"identity"`
	Node     string    `json:"node"`
	// Peer is the session the event is about, when it names one.
	Peer string `json:"peer,omitempty"`
}

// AuditIndex is the read model behind `jetmedia audit who`: every event under the key
// audit/d/<identity> 0x00 <time, 8 bytes> <room> 0x00 <seq, 8 bytes>, so one identity's events
// across every room are one contiguous range, in time order. The identity is the event's actor:
// the token identity for sessions opened with a token, "system" for the server's own events.
type AuditIndex struct{}

// Name implements Model.
func (AuditIndex) Name() string { return AuditModelName }

// Apply implements Model.
func (AuditIndex) Apply(b *pebble.Batch, e events.Envelope) error {
	ref := AuditRef{Time: e.Time, Room: e.Room, Seq: e.Seq, ID: e.ID, Type: e.Type, Identity: e.Actor, Node: e.Node}
	var peer struct {
		Peer string `json:"peer"`
	}
	if json.Unmarshal(e.Data, &peer) == nil {
		ref.Peer = peer.Peer
	}
	v, err := json.Marshal(ref)
	if err != nil {
		return err
	}
	return b.Set(auditKey(e.Actor, e.Time, e.Room, e.Seq), v, nil)
}

func auditIdentityPrefix(identity string) []byte {
	k := append(DataPrefix(AuditModelName), identity...)
	return append(k, 0)
}

// auditTime orders times as unsigned big-endian bytes; times before 1970 sort first.
func auditTime(t time.Time) uint64 {
	ns := t.UnixNano()
	if ns < 0 {
		return 0
	}
	return uint64(ns)
}

func auditKey(identity string, t time.Time, room string, seq uint64) []byte {
	k := auditIdentityPrefix(identity)
	k = binary.BigEndian.AppendUint64(k, auditTime(t))
	k = append(k, room...)
	k = append(k, 0)
	return binary.BigEndian.AppendUint64(k, seq)
}

// AuditQuery selects what AuditWho lists.
type AuditQuery struct {
	Identity string
	// From and To bound the events' times, both inclusive; zero means unbounded.
	From, To time.Time
	// Limit caps the answer (0: no cap).
	Limit int
}

// AuditWho lists, in time order across rooms, the events identity caused.
func AuditWho(r pebble.Reader, q AuditQuery) ([]AuditRef, error) {
	if q.Identity == "" {
		return nil, fmt.Errorf("projections: audit who needs an identity")
	}
	prefix := auditIdentityPrefix(q.Identity)
	lower := binary.BigEndian.AppendUint64(append([]byte(nil), prefix...), auditTime(q.From))
	var upper []byte
	if q.To.IsZero() || auditTime(q.To) == math.MaxUint64 {
		upper = append(append([]byte(nil), prefix[:len(prefix)-1]...), 1) // just past the identity
	} else {
		upper = binary.BigEndian.AppendUint64(append([]byte(nil), prefix...), auditTime(q.To)+1)
	}
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return nil, fmt.Errorf("projections: audit who: %w", err)
	}
	out := []AuditRef{}
	for ok := it.First(); ok; ok = it.Next() {
		var ref AuditRef
		if err := json.Unmarshal(it.Value(), &ref); err != nil {
			_ = it.Close()
			return nil, fmt.Errorf("projections: audit index entry %q: %w", it.Key(), err)
		}
		out = append(out, ref)
		if q.Limit > 0 && len(out) >= q.Limit {
			break
		}
	}
	if err := it.Close(); err != nil {
		return nil, fmt.Errorf("projections: audit who: %w", err)
	}
	return out, nil
}
