package projections

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetmedia/jetmedia/events"
	"github.com/jetmedia/jetmedia/pipeline/eventlog"
)

// SnapshotStore keeps room snapshots in the snapshots KV bucket (eventlog.BucketSnapshots),
// one key per snapshot: "<room>.<seq>.<maxtime>", the sequence zero-padded to 20 digits and the
// latest event time in Unix nanoseconds, so that listing a room's keys finds the snapshot for
// an instant without reading the others. The bucket lives beside the log, replicated like it,
// so every node of a system reads the snapshots any node wrote (docs/snapshots.md says why a
// bucket and not the node's pebble store).
type SnapshotStore struct {
	js   jetstream.JetStream
	kv   jetstream.KeyValue
	log  *slog.Logger
	keep int // snapshots kept per room by Prune
	// markerTTL: the bucket's delete markers expire (eventlog.SnapshotsMarkerTTL).
	markerTTL bool
}

// SnapshotOption configures a SnapshotStore.
type SnapshotOption func(*SnapshotStore) error

// SnapshotKeep sets how many snapshots per room Prune keeps (SnapshotKeepDefault unless set);
// at least 1.
func SnapshotKeep(k int) SnapshotOption {
	return func(s *SnapshotStore) error {
		if k < 1 {
			return fmt.Errorf("projections: keep %d snapshots per room: keep at least 1", k)
		}
		s.keep = k
		return nil
	}
}

// OpenSnapshotStore opens the snapshots bucket (eventlog.Declare creates it).
func OpenSnapshotStore(ctx context.Context, js jetstream.JetStream, log *slog.Logger, opts ...SnapshotOption) (*SnapshotStore, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &SnapshotStore{js: js, log: log.With("component", "snapshots"), keep: SnapshotKeepDefault}
	for _, o := range opts {
		if err := o(s); err != nil {
			return nil, err
		}
	}
	kv, err := js.KeyValue(ctx, eventlog.BucketSnapshots)
	if err != nil {
		return nil, fmt.Errorf("projections: bucket %s: %w", eventlog.BucketSnapshots, err)
	}
	s.kv = kv
	if st, err := kv.Status(ctx); err == nil {
		// A bucket declared by an older version has no expiring markers until a node of this
		// one declares it again; till then deletions leave plain markers.
		s.markerTTL = st.LimitMarkerTTL() > 0
	}
	return s, nil
}

// SnapshotKey is the key of a snapshot in the bucket.
func SnapshotKey(room string, seq uint64, maxTime time.Time) string {
	return fmt.Sprintf("%s.%020d.%d", room, seq, max(maxTime.UnixNano(), 0))
}

// snapshotRef is a snapshot known by its key.
type snapshotRef struct {
	key     string
	seq     uint64
	maxTime int64 // Unix nanoseconds, a hint: the snapshot's own MaxTime decides
}

// Put stores a snapshot. A snapshot already stored under its key is left as it is: the fold is
// deterministic, so another writer's (another node's runner) is the same.
// A sealed snapshot over snapshotPartSize is stored in parts (putParts) under a head.
func (s *SnapshotStore) Put(ctx context.Context, snap RoomSnapshot) error {
	sealed, err := snap.seal()
	if err != nil {
		return err
	}
	key := SnapshotKey(snap.Room, snap.Seq, snap.MaxTime)
	b, err := json.Marshal(sealed)
	if err != nil {
		return fmt.Errorf("projections: encode snapshot of %s at %d: %w", snap.Room, snap.Seq, err)
	}
	if len(b) > snapshotPartSize {
		if b, err = s.putParts(ctx, key, sealed); err != nil {
			return fmt.Errorf("projections: store snapshot of %s at %d: %w", snap.Room, snap.Seq, err)
		}
	}
	if _, err := s.kv.Create(ctx, key, b); err != nil && !errors.Is(err, jetstream.ErrKeyExists) {
		return fmt.Errorf("projections: store snapshot of %s at %d: %w", snap.Room, snap.Seq, err)
	}
	return nil
}

// refs lists a room's snapshots, newest (highest sequence) first.
func (s *SnapshotStore) refs(ctx context.Context, room string) ([]snapshotRef, error) {
	refs, _, err := s.keys(ctx, room, false)
	return refs, err
}

// keys lists a room's snapshots, newest (highest sequence) first, and with parts the keys of
// the parts stored in the bucket by their head's key (a head that is not in refs: parts whose
// writer has not stored the head yet, or never will).
func (s *SnapshotStore) keys(ctx context.Context, room string, parts bool) ([]snapshotRef, map[string][]string, error) {
	filters := []string{room + ".*.*"}
	if parts {
		filters = append(filters, room+".*.*.*")
	}
	lister, err := s.kv.ListKeysFiltered(ctx, filters...)
	if err != nil {
		if errors.Is(err, jetstream.ErrNoKeysFound) {
			return nil, nil, nil
		}
		return nil, nil, fmt.Errorf("projections: list snapshots of %s: %w", room, err)
	}
	defer func() { _ = lister.Stop() }()
	var out []snapshotRef
	partsOf := map[string][]string{}
	for key := range lister.Keys() {
		tokens := strings.Split(key, ".")
		if len(tokens) < 3 || len(tokens) > 4 {
			continue
		}
		seq, err1 := strconv.ParseUint(tokens[1], 10, 64)
		ns, err2 := strconv.ParseInt(tokens[2], 10, 64)
		if err1 != nil || err2 != nil {
			continue // not a snapshot key
		}
		if len(tokens) == 4 {
			head := strings.Join(tokens[:3], ".")
			partsOf[head] = append(partsOf[head], key)
			continue
		}
		out = append(out, snapshotRef{key: key, seq: seq, maxTime: ns})
	}
	slices.SortFunc(out, func(a, b snapshotRef) int { return cmp.Compare(b.seq, a.seq) })
	return out, partsOf, nil
}

// Nearest returns the room's latest snapshot that is its state at instant at (zero: now) and
// that matches the log, and false when there is none. A snapshot that does not decode or does
// not match the log is skipped with a warning that names it (the caller folds from an older
// one, or the whole log, instead).
func (s *SnapshotStore) Nearest(ctx context.Context, room string, at time.Time) (RoomSnapshot, bool, error) {
	refs, err := s.refs(ctx, room)
	if err != nil {
		return RoomSnapshot{}, false, err
	}
	for _, ref := range refs {
		if !at.IsZero() && ref.maxTime > at.UnixNano() {
			continue
		}
		snap, err := s.load(ctx, room, ref)
		if errors.Is(err, ErrSnapshotInvalid) {
			s.log.Warn("snapshot rejected: folding from an older one or the whole log instead",
				"room", room, "key", ref.key, "err", err)
			continue
		}
		if err != nil {
			return RoomSnapshot{}, false, err
		}
		if snap.usableAt(at) {
			return snap, true, nil
		}
	}
	return RoomSnapshot{}, false, nil
}

// load reads one snapshot and checks it against its key and the log.
func (s *SnapshotStore) load(ctx context.Context, room string, ref snapshotRef) (RoomSnapshot, error) {
	snap, err := s.read(ctx, ref.key)
	if err != nil {
		return RoomSnapshot{}, err
	}
	if snap.Room != room || snap.Seq != ref.seq {
		return RoomSnapshot{}, fmt.Errorf("%w: a snapshot of %s at %d under key %s", ErrSnapshotInvalid, snap.Room, snap.Seq, ref.key)
	}
	return snap, s.CheckHead(ctx, snap)
}

// CheckHead checks that the log holds, at the snapshot's sequence, an event of its room whose
// hash is the snapshot's head.
func (s *SnapshotStore) CheckHead(ctx context.Context, snap RoomSnapshot) error {
	stream, err := s.js.Stream(ctx, eventlog.StreamEvents)
	if err != nil {
		return fmt.Errorf("projections: stream %s: %w", eventlog.StreamEvents, err)
	}
	msg, err := stream.GetMsg(ctx, snap.Seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return checkLink(ctx, stream, snap)
	}
	if err != nil {
		return fmt.Errorf("projections: read event %d: %w", snap.Seq, err)
	}
	if !strings.HasPrefix(msg.Subject, "ev."+snap.Room+".") {
		return fmt.Errorf("%w: the event at %d is of %s, not of room %s", ErrSnapshotInvalid, snap.Seq, msg.Subject, snap.Room)
	}
	if h := events.Hash(msg.Data); h != snap.Head {
		return fmt.Errorf("%w: the log's chain head of %s at %d is %s, the snapshot's %s", ErrSnapshotInvalid, snap.Room, snap.Seq, h, snap.Head)
	}
	return nil
}

// List returns every snapshot of a room, oldest first, decoded (not checked against the log).
func (s *SnapshotStore) List(ctx context.Context, room string) ([]RoomSnapshot, error) {
	refs, err := s.refs(ctx, room)
	if err != nil {
		return nil, err
	}
	out := make([]RoomSnapshot, 0, len(refs))
	for _, ref := range slices.Backward(refs) {
		snap, err := s.read(ctx, ref.key)
		if err != nil {
			return nil, fmt.Errorf("snapshot %s: %w", ref.key, err)
		}
		out = append(out, snap)
	}
	return out, nil
}

// WriteSnapshots folds a room's log from its latest valid snapshot (or from the start) to the
// log's head and stores a snapshot every `every` events (0: SnapshotEvery) and, with atHead,
// one at the head. Having stored any, it prunes the room's snapshots (Prune). It returns how
// many it stored.
func (s *SnapshotStore) WriteSnapshots(ctx context.Context, room string, every int, atHead bool) (int, error) {
	if every <= 0 {
		every = SnapshotEvery
	}
	from, ok, err := s.Nearest(ctx, room, time.Time{})
	if err != nil {
		return 0, err
	}
	var f *snapshotFolder
	if ok {
		f = newSnapshotFolder(room, &from)
	} else {
		f = newSnapshotFolder(room, nil)
	}
	written, last := 0, uint64(0)
	take := func() error {
		snap, err := NewRoomSnapshot(f.room, f.head, f.maxTime)
		if err != nil {
			return err
		}
		if err := s.Put(ctx, snap); err != nil {
			return err
		}
		written, last = written+1, snap.Seq
		f.folded = 0
		return nil
	}
	err = eventlog.ReadStored(ctx, s.js, eventlog.ReadOptions{Filter: eventlog.RoomEventsFilter(room), FromSeq: f.room.LastSeq + 1},
		func(st eventlog.StoredEvent) error {
			if err := f.fold(st); err != nil {
				return err
			}
			if f.folded >= every {
				return take()
			}
			return nil
		})
	if err != nil {
		return written, err
	}
	if atHead && f.folded > 0 {
		if err := take(); err != nil {
			return written, err
		}
	}
	if written > 0 {
		if _, err := s.prune(ctx, room, last); err != nil {
			return written, err
		}
	}
	return written, nil
}

// fold folds one stored event of the room.
func (f *snapshotFolder) fold(st eventlog.StoredEvent) error {
	e, err := events.Decode(st.Data)
	if err != nil {
		return fmt.Errorf("projections: event %d on %s: %w", st.Seq, st.Subject, err)
	}
	e.Seq = st.Seq
	changed, err := foldInPlace(&f.room, e)
	if err != nil {
		return err
	}
	if changed {
		f.head = events.Hash(st.Data)
		if e.Time.After(f.maxTime) {
			f.maxTime = e.Time
		}
		f.folded++
	}
	return nil
}

// VerifySnapshot checks a snapshot against the log the long way: the fold of its room's
// events up to its sequence must equal its state, their latest time its MaxTime, and the
// event at its sequence its head. It returns nil or an error wrapping ErrSnapshotInvalid.
func VerifySnapshot(ctx context.Context, js jetstream.JetStream, snap RoomSnapshot) error {
	f := newSnapshotFolder(snap.Room, nil)
	err := eventlog.ReadStored(ctx, js, eventlog.ReadOptions{Filter: eventlog.RoomEventsFilter(snap.Room)}, func(st eventlog.StoredEvent) error {
		if st.Seq > snap.Seq {
			return errReachedAt
		}
		return f.fold(st)
	})
	if err != nil && !errors.Is(err, errReachedAt) {
		return err
	}
	want, err := Entries(f.room)
	if err != nil {
		return err
	}
	got, err := Entries(snap.State)
	if err != nil {
		return err
	}
	switch {
	case f.room.LastSeq != snap.Seq:
		return fmt.Errorf("%w: room %s has no event at %d", ErrSnapshotInvalid, snap.Room, snap.Seq)
	case f.head != snap.Head:
		return fmt.Errorf("%w: chain head at %d differs", ErrSnapshotInvalid, snap.Seq)
	case !f.maxTime.Equal(snap.MaxTime):
		return fmt.Errorf("%w: latest event time %s, the snapshot says %s", ErrSnapshotInvalid, f.maxTime, snap.MaxTime)
	case !maps.EqualFunc(want, got, func(a, b []byte) bool { return string(a) == string(b) }):
		return fmt.Errorf("%w: room %s at %d: the log's fold differs from the snapshot's state", ErrSnapshotInvalid, snap.Room, snap.Seq)
	}
	return nil
}

// StateAtFrom is StateAt starting from the nearest valid snapshot before at in snaps (nil:
// none), folding only the events after it. each sees only those events. It also returns the
// sequence of the snapshot it started from (0: the start of the log).
func StateAtFrom(ctx context.Context, js jetstream.JetStream, snaps *SnapshotStore, room string, at time.Time, each func(events.Envelope) error) (Room, uint64, error) {
	r := NewRoom(room)
	if snaps != nil {
		snap, ok, err := snaps.Nearest(ctx, room, at)
		if err != nil {
			return r, 0, err
		}
		if ok {
			r = snap.State
		}
	}
	from := r.LastSeq
	err := eventlog.Read(ctx, js, eventlog.ReadOptions{Filter: eventlog.RoomEventsFilter(room), FromSeq: from + 1}, func(e events.Envelope) error {
		if !Before(e, at) {
			return errReachedAt
		}
		if _, err := foldInPlace(&r, e); err != nil {
			return err
		}
		if each != nil {
			return each(e)
		}
		return nil
	})
	if err != nil && !errors.Is(err, errReachedAt) {
		return r, from, err
	}
	return r, from, nil
}
