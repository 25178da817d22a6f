package projections

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetmedia/jetmedia/pipeline/eventlog"
)

// SnapshotKeepDefault is how many snapshots of each room Prune keeps unless told otherwise.
// With one written every 10,000 events, 100 cover a room's last 1,000,000 events, so a replay
// to any instant among them folds at most 10,000 events after its snapshot (issue 16 asks
// any instant of a 1M-event room in 3 s); they cost 100 times the room's state (388 KiB for
// the generator's 1M-event room, ~21 MiB for a room of 5,000 viewers). Fewer make old
// instants fold from the log's start.
const SnapshotKeepDefault = 100

// Prune deletes the room's snapshots but the newest `keep` (the store's, SnapshotKeep) and
// returns how many it deleted. It never deletes the newest valid snapshot (the one a cold
// node would start from), even when newer ones that fail their checks fill the `keep`; and it
// also deletes, among those kept, a snapshot the log can no longer continue (its retention
// dropped the room's events after it) when a newer valid one exists. Parts go with their head,
// and parts whose head was never stored are deleted once they are older than every snapshot
// kept. Several stores may prune the same room at once: each deletes only what its own
// listing shows past the newest valid snapshot it found, so the newest valid snapshot any of
// them saw survives, and a key deleted twice is still deleted.
func (s *SnapshotStore) Prune(ctx context.Context, room string) (int, error) {
	return s.prune(ctx, room, 0)
}

// prune is Prune knowing that the snapshot at sequence valid (0: none) is valid: it was just
// written from the log's fold, and need not be read back.
func (s *SnapshotStore) prune(ctx context.Context, room string, valid uint64) (int, error) {
	refs, partsOf, err := s.keys(ctx, room, true)
	if err != nil {
		return 0, err
	}
	newest, err := s.newestValid(ctx, room, refs, valid)
	if err != nil {
		return 0, err
	}
	drop, err := s.toDrop(ctx, room, refs, newest)
	if err != nil {
		return 0, err
	}
	oldestKept := uint64(0)
	for _, ref := range refs {
		if !drop[ref.key] {
			oldestKept = ref.seq
		}
	}
	deleted := 0
	for _, ref := range refs {
		if !drop[ref.key] {
			continue
		}
		// The head first: a reader then never finds a head whose parts are going.
		if err := s.purge(ctx, ref.key); err != nil {
			return deleted, err
		}
		deleted++
	}
	for head, parts := range partsOf {
		if !drop[head] && !orphanBefore(head, refs, oldestKept) {
			continue
		}
		for _, pk := range parts {
			if err := s.purge(ctx, pk); err != nil {
				return deleted, err
			}
		}
	}
	return deleted, nil
}

// toDrop is the keys of refs (newest first) that prune deletes, newest the index of the
// newest valid one (-1: none).
func (s *SnapshotStore) toDrop(ctx context.Context, room string, refs []snapshotRef, newest int) (map[string]bool, error) {
	drop := map[string]bool{}
	first := uint64(0) // the log's first retained sequence, read when needed
	for i, ref := range refs {
		switch {
		case i == newest:
		case i >= s.keep:
			drop[ref.key] = true
		case newest >= 0 && i > newest:
			// Kept by count; dropped when the log can no longer continue it, which only a
			// snapshot below the log's first event can be (reading it costs its parts).
			if first == 0 {
				var err error
				if first, err = s.firstSeq(ctx); err != nil {
					return nil, err
				}
			}
			if ref.seq >= first {
				continue
			}
			_, err := s.load(ctx, room, ref)
			if errors.Is(err, errBehindLog) {
				drop[ref.key] = true
			} else if err != nil && !errors.Is(err, ErrSnapshotInvalid) {
				return nil, err
			}
		}
	}
	return drop, nil
}

// firstSeq is the sequence of the log's first retained event.
func (s *SnapshotStore) firstSeq(ctx context.Context) (uint64, error) {
	stream, err := s.js.Stream(ctx, eventlog.StreamEvents)
	if err != nil {
		return 0, fmt.Errorf("projections: stream %s: %w", eventlog.StreamEvents, err)
	}
	info, err := stream.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("projections: stream %s: %w", eventlog.StreamEvents, err)
	}
	return max(info.State.FirstSeq, 1), nil
}

// newestValid is the index in refs (newest first) of the newest snapshot that passes the
// checks a reader makes, -1 for none.
func (s *SnapshotStore) newestValid(ctx context.Context, room string, refs []snapshotRef, valid uint64) (int, error) {
	for i, ref := range refs {
		if valid != 0 && ref.seq == valid {
			return i, nil
		}
		_, err := s.load(ctx, room, ref)
		if err == nil {
			return i, nil
		}
		if !errors.Is(err, ErrSnapshotInvalid) {
			return -1, err
		}
	}
	return -1, nil
}

// orphanBefore reports whether head, the key of stored parts, is no snapshot's key and is
// older than oldest: a writer that stored those parts and not the head (it stopped between)
// writes snapshots newer than every kept one, so parts older than them all are nobody's.
func orphanBefore(head string, refs []snapshotRef, oldest uint64) bool {
	for _, ref := range refs {
		if ref.key == head {
			return false
		}
	}
	tokens := strings.Split(head, ".")
	seq, err := strconv.ParseUint(tokens[len(tokens)-2], 10, 64)
	return err == nil && seq < oldest
}

// purge removes a key and its history; a key already removed (another store pruning the same
// room) is no error.
func (s *SnapshotStore) purge(ctx context.Context, key string) error {
	var opts []jetstream.KVDeleteOpt
	if s.markerTTL {
		opts = append(opts, jetstream.PurgeTTL(eventlog.SnapshotsMarkerTTL))
	}
	if err := s.kv.Purge(ctx, key, opts...); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("projections: delete snapshot key %s: %w", key, err)
	}
	return nil
}

// PurgeMarkers removes the markers that deleted snapshot keys leave in the bucket once they
// are older than 30 minutes (nats.go's default): on a bucket declared by this version they
// expire by themselves after a minute; on an older one they would stay.
func (s *SnapshotStore) PurgeMarkers(ctx context.Context) error {
	if err := s.kv.PurgeDeletes(ctx); err != nil {
		return fmt.Errorf("projections: purge delete markers of %s: %w", s.kv.Bucket(), err)
	}
	return nil
}
