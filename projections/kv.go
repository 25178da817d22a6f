package projections

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetmedia/jetmedia/events"
	"github.com/jetmedia/jetmedia/pipeline/eventlog"
)

// KV keys of a room: "<room>.room" (the room itself, written last for every event, so its
// last_seq is the room's checkpoint), "<room>.peer.<peer>", "<room>.track.<track>",
// "<room>.sub.<peer>.<track>". One watch on "<room>.>" is a room's whole live state.
const (
	keyRoom  = "room"
	keyPeer  = "peer"
	keyTrack = "track"
	keySub   = "sub"
)

// RoomKey is the key of the room record.
func RoomKey(room string) string { return room + "." + keyRoom }

// Entries returns the KV entries that represent r: key → JSON value. Values depend only on the
// events folded in, so a rebuild writes the same bytes as the live projection.
func Entries(r Room) (map[string][]byte, error) {
	out := make(map[string][]byte, 1+len(r.Peers)+len(r.Tracks)+len(r.Subs))
	put := func(k string, v any) error {
		b, err := json.Marshal(v)
		if err != nil {
			return fmt.Errorf("projections: encode %s: %w", k, err)
		}
		out[k] = b
		return nil
	}
	if err := put(RoomKey(r.Room), r); err != nil {
		return nil, err
	}
	for id, p := range r.Peers {
		if err := put(r.Room+"."+keyPeer+"."+id, p); err != nil {
			return nil, err
		}
	}
	for id, t := range r.Tracks {
		if err := put(r.Room+"."+keyTrack+"."+id, t); err != nil {
			return nil, err
		}
	}
	for _, s := range r.Subs {
		if err := put(r.Room+"."+keySub+"."+s.Peer+"."+s.Track, s); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// ApplyEntry adds one KV entry to a room being read back from the bucket.
func ApplyEntry(r *Room, key string, value []byte) error {
	parts := strings.Split(key, ".")
	if len(parts) < 2 || parts[0] != r.Room {
		return fmt.Errorf("projections: key %q is not of room %s", key, r.Room)
	}
	var err error
	switch {
	case parts[1] == keyRoom && len(parts) == 2:
		peers, tracks, subs := r.Peers, r.Tracks, r.Subs
		err = json.Unmarshal(value, r)
		r.Peers, r.Tracks, r.Subs = peers, tracks, subs
	case parts[1] == keyPeer && len(parts) == 3:
		var p Peer
		err = json.Unmarshal(value, &p)
		r.Peers[parts[2]] = p
	case parts[1] == keyTrack && len(parts) == 3:
		var t Track
		err = json.Unmarshal(value, &t)
		r.Tracks[parts[2]] = t
	case parts[1] == keySub && len(parts) == 4:
		var s Subscription
		err = json.Unmarshal(value, &s)
		r.Subs[SubKey(parts[2], parts[3])] = s
	default:
		return fmt.Errorf("projections: unknown key %q", key)
	}
	if err != nil {
		return fmt.Errorf("projections: decode %s: %w", key, err)
	}
	return nil
}

// LoadRoom reads a room's state from the bucket (an empty room if it has no keys).
func LoadRoom(ctx context.Context, kv jetstream.KeyValue, room string) (Room, error) {
	r := NewRoom(room)
	w, err := kv.Watch(ctx, room+".>", jetstream.IgnoreDeletes())
	if err != nil {
		return r, fmt.Errorf("projections: watch room %s: %w", room, err)
	}
	defer func() { _ = w.Stop() }()
	for {
		select {
		case <-ctx.Done():
			return r, ctx.Err()
		case e, ok := <-w.Updates():
			if !ok {
				return r, fmt.Errorf("projections: watch room %s ended", room)
			}
			if e == nil {
				return r, nil
			}
			if err := ApplyEntry(&r, e.Key(), e.Value()); err != nil {
				return r, err
			}
		}
	}
}

// Snapshot returns every live key of a bucket with its value.
func Snapshot(ctx context.Context, kv jetstream.KeyValue) (map[string][]byte, error) {
	out := map[string][]byte{}
	w, err := kv.WatchAll(ctx, jetstream.IgnoreDeletes())
	if err != nil {
		return nil, fmt.Errorf("projections: snapshot: %w", err)
	}
	defer func() { _ = w.Stop() }()
	for {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case e, ok := <-w.Updates():
			if !ok {
				return nil, errors.New("projections: snapshot watch ended")
			}
			if e == nil {
				return out, nil
			}
			out[e.Key()] = e.Value()
		}
	}
}

// Rooms reads every room's state from a bucket, sorted by room id.
func Rooms(ctx context.Context, kv jetstream.KeyValue) ([]Room, error) {
	snap, err := Snapshot(ctx, kv)
	if err != nil {
		return nil, err
	}
	byRoom := map[string]*Room{}
	for _, k := range slices.Sorted(maps.Keys(snap)) {
		id, _, _ := strings.Cut(k, ".")
		r, ok := byRoom[id]
		if !ok {
			nr := NewRoom(id)
			r = &nr
			byRoom[id] = r
		}
		if err := ApplyEntry(r, k, snap[k]); err != nil {
			return nil, err
		}
	}
	out := make([]Room, 0, len(byRoom))
	for _, id := range slices.Sorted(maps.Keys(byRoom)) {
		out = append(out, *byRoom[id])
	}
	return out, nil
}

// KVRunner folds events into a KV bucket. It is the handler of a durable consumer: the
// consumer's ack floor is where it resumes after a restart, and each room's last_seq makes a
// redelivered event a no-op, so no event is applied twice.
type KVRunner struct {
	kv  jetstream.KeyValue
	log *slog.Logger

	mu    sync.Mutex
	rooms map[string]cached
}

type cached struct {
	room    Room
	entries map[string][]byte
}

// NewKVRunner returns a runner writing into kv.
func NewKVRunner(kv jetstream.KeyValue, log *slog.Logger) *KVRunner {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &KVRunner{kv: kv, log: log.With("component", "projection"), rooms: map[string]cached{}}
}

// Handle is the watermill handler: one stored event per message.
func (k *KVRunner) Handle(msg *message.Message) error {
	e, err := events.Decode(msg.Payload)
	if err != nil {
		// A malformed event cannot become valid by retrying; skip it loudly (the poison is in
		// the log for anyone to inspect) rather than block every room behind it.
		k.log.Error("skipping undecodable event", "subject", msg.Metadata.Get(eventlog.MetaSubject),
			"seq", msg.Metadata.Get(eventlog.MetaSeq), "err", err)
		return nil
	}
	e.Seq, err = strconv.ParseUint(msg.Metadata.Get(eventlog.MetaSeq), 10, 64)
	if err != nil {
		return fmt.Errorf("projections: event %s has no stream sequence: %w", e.ID, err)
	}
	err = k.Apply(msg.Context(), e)
	if errors.Is(err, events.ErrInvalid) {
		// Same as above: data that does not decode never will, and the consumer keeps one
		// event in flight, so retrying it would stall every room.
		k.log.Error("skipping event with invalid data", "id", e.ID, "type", e.Type, "seq", e.Seq, "err", err)
		return nil
	}
	return err
}

// Apply folds one stored event (with Seq set) into the bucket.
func (k *KVRunner) Apply(ctx context.Context, e events.Envelope) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	c, err := k.current(ctx, e.Room)
	if err != nil {
		return err
	}
	next, err := Fold(c.room, e)
	if err != nil {
		return err
	}
	if next.LastSeq == c.room.LastSeq {
		return nil // already applied
	}
	entries, err := Entries(next)
	if err != nil {
		return err
	}
	roomKey := RoomKey(e.Room)
	for key, v := range entries {
		if key == roomKey || bytes.Equal(c.entries[key], v) {
			continue
		}
		if _, err := k.kv.Put(ctx, key, v); err != nil {
			delete(k.rooms, e.Room)
			return fmt.Errorf("projections: put %s: %w", key, err)
		}
	}
	for key := range c.entries {
		if _, ok := entries[key]; ok {
			continue
		}
		// Purged with an expiring marker, not deleted: a delete marker per ended peer,
		// track and subscription would stay in the bucket (and in JetStream's memory) for
		// ever.
		if err := k.kv.Purge(ctx, key, jetstream.PurgeTTL(eventlog.RoomsMarkerTTL)); err != nil {
			delete(k.rooms, e.Room)
			return fmt.Errorf("projections: delete %s: %w", key, err)
		}
	}
	if _, err := k.kv.Put(ctx, roomKey, entries[roomKey]); err != nil {
		delete(k.rooms, e.Room)
		return fmt.Errorf("projections: put %s: %w", roomKey, err)
	}
	if len(next.Peers)+len(next.Tracks)+len(next.Subs) == 0 {
		// Everyone left: the runner keeps nothing of the room (its record, in the bucket,
		// is read again by the room's next event), or the cache would hold every room the
		// node ever projected.
		delete(k.rooms, e.Room)
		return nil
	}
	k.rooms[e.Room] = cached{room: next, entries: entries}
	return nil
}

// Cached is the number of rooms whose state the runner keeps in memory (rooms with someone
// in them).
func (k *KVRunner) Cached() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return len(k.rooms)
}

// current returns the room as the bucket holds it. The cache is trusted only while the room
// record in the bucket still has the cached checkpoint: another node's runner may have moved it.
func (k *KVRunner) current(ctx context.Context, room string) (cached, error) {
	if c, ok := k.rooms[room]; ok {
		ent, err := k.kv.Get(ctx, RoomKey(room))
		if err == nil && bytes.Equal(ent.Value(), c.entries[RoomKey(room)]) {
			return c, nil
		}
	}
	r, err := LoadRoom(ctx, k.kv, room)
	if err != nil {
		return cached{}, err
	}
	entries := map[string][]byte{}
	if r.Exists() {
		if entries, err = Entries(r); err != nil {
			return cached{}, err
		}
	}
	c := cached{room: r, entries: entries}
	k.rooms[room] = c
	return c, nil
}

// Rebuild folds the whole log, from the start to its current head, into a fresh bucket (deleted
// first if it exists) and returns the number of events read. Compare the result with the live
// bucket using Snapshot.
func Rebuild(ctx context.Context, js jetstream.JetStream, bucket string, sc eventlog.StorageConfig) (int, error) {
	if bucket == eventlog.BucketRooms {
		return 0, fmt.Errorf("projections: refusing to rebuild into the live bucket %s", bucket)
	}
	if err := js.DeleteKeyValue(ctx, bucket); err != nil && !errors.Is(err, jetstream.ErrBucketNotFound) {
		return 0, fmt.Errorf("projections: delete bucket %s: %w", bucket, err)
	}
	kv, err := js.CreateKeyValue(ctx, eventlog.RoomsBucketConfig(bucket, sc))
	if err != nil {
		return 0, fmt.Errorf("projections: create bucket %s: %w", bucket, err)
	}
	rooms := map[string]Room{}
	n := 0
	err = eventlog.Read(ctx, js, eventlog.ReadOptions{Filter: eventlog.EventsSubjects}, func(e events.Envelope) error {
		r, ok := rooms[e.Room]
		if !ok {
			r = NewRoom(e.Room)
		}
		r, err := Fold(r, e)
		if err != nil {
			return err
		}
		rooms[e.Room] = r
		n++
		return nil
	})
	if err != nil {
		return n, err
	}
	for _, id := range slices.Sorted(maps.Keys(rooms)) {
		entries, err := Entries(rooms[id])
		if err != nil {
			return n, err
		}
		for _, key := range slices.Sorted(maps.Keys(entries)) {
			if _, err := kv.Put(ctx, key, entries[key]); err != nil {
				return n, fmt.Errorf("projections: put %s: %w", key, err)
			}
		}
	}
	return n, nil
}
