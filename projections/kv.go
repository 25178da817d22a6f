package projections

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

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

// PeerKey is the key of a peer of the room.
func PeerKey(room, peer string) string { return room + "." + keyPeer + "." + peer }

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
		if err := put(PeerKey(r.Room, id), p); err != nil {
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
	var r Room
	err := ReadInitial(ctx, kv, room+".>", func() { r = NewRoom(room) }, func(e jetstream.KeyValueEntry) error {
		return ApplyEntry(&r, e.Key(), e.Value())
	})
	if err != nil {
		return NewRoom(room), fmt.Errorf("projections: read room %s: %w", room, err)
	}
	return r, nil
}

// LoadRoomCurrent reads a room's state from the bucket once it has folded every event the log
// held for the room when it was called: it reads the room's newest stored sequence from
// events (the EVENTS stream) and rereads the bucket until the room's LastSeq reaches it,
// for up to wait. A reader that acts on who is in the room (WHEP's choice of the publisher to
// play) must not act on a state the log has already moved past: a publisher that left a
// moment ago is still in a lagging bucket, and a viewer bound to its tracks gets nothing.
// It reports whether the state is current; after wait it returns the bucket's state as it is
// (an event the projection cannot fold must not stop the room's readers for good).
func LoadRoomCurrent(ctx context.Context, kv jetstream.KeyValue, stream jetstream.Stream, room string, wait time.Duration) (Room, bool, error) {
	head := uint64(0)
	msg, err := stream.GetLastMsgForSubject(ctx, eventlog.RoomEventsFilter(room))
	switch {
	case err == nil:
		head = msg.Sequence
	case !errors.Is(err, jetstream.ErrMsgNotFound):
		return NewRoom(room), false, fmt.Errorf("projections: newest event of room %s: %w", room, err)
	}
	deadline := time.Now().Add(wait)
	for {
		r, err := LoadRoom(ctx, kv, room)
		if err != nil || r.LastSeq >= head {
			return r, err == nil, err
		}
		if !time.Now().Before(deadline) {
			return r, false, nil
		}
		select {
		case <-ctx.Done():
			return r, false, fmt.Errorf("projections: room %s at %d, the log at %d: %w", room, r.LastSeq, head, ctx.Err())
		case <-time.After(currentPoll):
		}
	}
}

// currentPoll is how often LoadRoomCurrent rereads a bucket that lags the log.
const currentPoll = 10 * time.Millisecond

// Snapshot returns every live key of a bucket with its value.
func Snapshot(ctx context.Context, kv jetstream.KeyValue) (map[string][]byte, error) {
	var out map[string][]byte
	err := ReadInitial(ctx, kv, jetstream.AllKeys, func() { out = map[string][]byte{} }, func(e jetstream.KeyValueEntry) error {
		out[e.Key()] = e.Value()
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("projections: snapshot: %w", err)
	}
	return out, nil
}

// Reading a bucket's current values with a watch waits for the watch's "initial values done"
// mark, which nats.go sends once as many entries arrived as its consumer had pending when it
// was made. An ended key's delete marker that expires (the rooms bucket's markers live a
// minute) after the consumer counted it but before it was delivered never arrives, and the
// mark never comes: the churn soak stalled the rooms projection for good that way. So a read
// that hears nothing for readStall starts again on a fresh watch (which no longer counts the
// expired marker), at most readAttempts times.
const (
	readStall    = 2 * time.Second
	readAttempts = 5
)

// errReadStalled says a watch never marked its initial values done.
var errReadStalled = errors.New("the bucket watch stalled before its initial values were done")

// ReadInitial calls reset, then apply for every live key matching filter (deleted keys
// skipped), until the bucket's current values are all read. A watch that stalls before its
// initial values are done starts again from reset (see readStall). Every one-shot read of a
// bucket goes through it.
func ReadInitial(ctx context.Context, kv jetstream.KeyValue, filter string, reset func(), apply func(jetstream.KeyValueEntry) error) error {
	for range readAttempts {
		reset()
		err := readOnce(ctx, kv, filter, apply)
		if !errors.Is(err, errReadStalled) {
			return err
		}
	}
	return fmt.Errorf("%w (%d attempts)", errReadStalled, readAttempts)
}

func readOnce(ctx context.Context, kv jetstream.KeyValue, filter string, apply func(jetstream.KeyValueEntry) error) error {
	w, err := kv.Watch(ctx, filter, jetstream.IgnoreDeletes())
	if err != nil {
		return fmt.Errorf("watch %s: %w", filter, err)
	}
	defer func() { _ = w.Stop() }()
	stall := time.NewTimer(readStall)
	defer stall.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-stall.C:
			return errReadStalled
		case e, ok := <-w.Updates():
			if !ok {
				return errors.New("watch ended")
			}
			if e == nil {
				return nil
			}
			if err := apply(e); err != nil {
				return err
			}
			stall.Reset(readStall)
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

// freshBucket deletes bucket if it exists and creates it empty; never the live rooms bucket.
func freshBucket(ctx context.Context, js jetstream.JetStream, bucket string, sc eventlog.StorageConfig) (jetstream.KeyValue, error) {
	if bucket == eventlog.BucketRooms {
		return nil, fmt.Errorf("projections: refusing to rebuild into the live bucket %s", bucket)
	}
	if err := js.DeleteKeyValue(ctx, bucket); err != nil && !errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil, fmt.Errorf("projections: delete bucket %s: %w", bucket, err)
	}
	kv, err := js.CreateKeyValue(ctx, eventlog.RoomsBucketConfig(bucket, sc))
	if err != nil {
		return nil, fmt.Errorf("projections: create bucket %s: %w", bucket, err)
	}
	return kv, nil
}

// Rebuild folds the whole log, from the start to its current head, into a fresh bucket (deleted
// first if it exists) and returns the number of events read. Compare the result with the live
// bucket using Snapshot.
func Rebuild(ctx context.Context, js jetstream.JetStream, bucket string, sc eventlog.StorageConfig) (int, error) {
	kv, err := freshBucket(ctx, js, bucket, sc)
	if err != nil {
		return 0, err
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
