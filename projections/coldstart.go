package projections

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetmedia/jetmedia/events"
	"github.com/jetmedia/jetmedia/pipeline/eventlog"
)

// ColdStartMaxRooms bounds the rooms SeedFromSnapshots looks at (a few round trips each): a
// log with more starts its cold projection from its first event.
const ColdStartMaxRooms = 10_000

// LogRooms lists the rooms that have events in the log, sorted.
func LogRooms(ctx context.Context, js jetstream.JetStream) ([]string, error) {
	stream, err := js.Stream(ctx, eventlog.StreamEvents)
	if err != nil {
		return nil, fmt.Errorf("projections: stream %s: %w", eventlog.StreamEvents, err)
	}
	info, err := stream.Info(ctx, jetstream.WithSubjectFilter(eventlog.EventsSubjects))
	if err != nil {
		return nil, fmt.Errorf("projections: stream %s: %w", eventlog.StreamEvents, err)
	}
	set := map[string]bool{}
	for subject := range info.State.Subjects {
		if room, ok := subjectRoom(subject); ok {
			set[room] = true
		}
	}
	return slices.Sorted(maps.Keys(set)), nil
}

// SeedFromSnapshots prepares a cold rooms projection (an empty bucket, a consumer not made
// yet): it writes into kv the state of every room of the log from its latest valid snapshot,
// and returns the stream sequence the projection's consumer may start at: the lowest of each
// room's first event after its snapshot (its first event, for a room without one). Every
// event before it is in a snapshot written to kv. It returns 1 (the start) when kv is not
// empty, when the log has more than ColdStartMaxRooms rooms, or when it has no rooms.
func SeedFromSnapshots(ctx context.Context, js jetstream.JetStream, kv jetstream.KeyValue, store *SnapshotStore) (uint64, error) {
	lister, err := kv.ListKeys(ctx)
	if err != nil && !errors.Is(err, jetstream.ErrNoKeysFound) {
		return 1, fmt.Errorf("projections: list %s: %w", kv.Bucket(), err)
	}
	if err == nil {
		for range lister.Keys() {
			_ = lister.Stop()
			return 1, nil // not cold
		}
	}
	rooms, err := LogRooms(ctx, js)
	if err != nil || len(rooms) == 0 || len(rooms) > ColdStartMaxRooms {
		return 1, err
	}
	stream, err := js.Stream(ctx, eventlog.StreamEvents)
	if err != nil {
		return 1, fmt.Errorf("projections: stream %s: %w", eventlog.StreamEvents, err)
	}
	start := uint64(0)
	for _, room := range rooms {
		from := uint64(1)
		snap, ok, err := store.Nearest(ctx, room, time.Time{})
		if err != nil {
			return 1, err
		}
		if ok {
			if err := putRoom(ctx, kv, snap.State); err != nil {
				return 1, err
			}
			from = snap.Seq + 1
		}
		next, err := stream.GetMsg(ctx, from, jetstream.WithGetMsgSubject(eventlog.RoomEventsFilter(room)))
		switch {
		case errors.Is(err, jetstream.ErrMsgNotFound):
			continue // nothing after the snapshot
		case err != nil:
			return 1, fmt.Errorf("projections: first event of %s after %d: %w", room, from-1, err)
		}
		if start == 0 || next.Sequence < start {
			start = next.Sequence
		}
	}
	if start == 0 {
		// Every room is at its snapshot: the consumer starts after the newest event.
		info, err := stream.Info(ctx)
		if err != nil {
			return 1, fmt.Errorf("projections: stream %s: %w", eventlog.StreamEvents, err)
		}
		start = info.State.LastSeq + 1
	}
	return start, nil
}

// RebuildFromSnapshots is Rebuild from each room's newest valid snapshot (store) plus the
// room's events after it, instead of the whole log: the same bucket as Rebuild's (a
// snapshot is checked against the log before it is used: store.Nearest), in the time of the
// tails. It returns the number of events folded after the snapshots.
func RebuildFromSnapshots(ctx context.Context, js jetstream.JetStream, bucket string, sc eventlog.StorageConfig, store *SnapshotStore) (int, error) {
	kv, err := freshBucket(ctx, js, bucket, sc)
	if err != nil {
		return 0, err
	}
	rooms, err := LogRooms(ctx, js)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, room := range rooms {
		r, from := NewRoom(room), uint64(1)
		snap, ok, err := store.Nearest(ctx, room, time.Time{})
		if err != nil {
			return n, err
		}
		if ok {
			r, from = snap.State, snap.Seq+1
		}
		err = eventlog.Read(ctx, js, eventlog.ReadOptions{Filter: eventlog.RoomEventsFilter(room), FromSeq: from}, func(e events.Envelope) error {
			var err error
			r, err = Fold(r, e)
			n++
			return err
		})
		if err != nil {
			return n, fmt.Errorf("projections: fold room %s after seq %d: %w", room, from-1, err)
		}
		if err := putRoom(ctx, kv, r); err != nil {
			return n, err
		}
	}
	return n, nil
}

// putRoom writes a room's keys (its record last) into an empty bucket.
func putRoom(ctx context.Context, kv jetstream.KeyValue, r Room) error {
	entries, err := Entries(r)
	if err != nil {
		return err
	}
	record := RoomKey(r.Room)
	keys := slices.DeleteFunc(slices.Sorted(maps.Keys(entries)), func(k string) bool { return k == record })
	for _, key := range append(keys, record) {
		if _, err := kv.Create(ctx, key, entries[key]); err != nil {
			return fmt.Errorf("projections: write %s: %w", key, err)
		}
	}
	return nil
}
