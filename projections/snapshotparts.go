package projections

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetmedia/jetmedia/pipeline/eventlog"
)

// snapshotPartSize is the largest value the store writes under one key: a sealed snapshot
// over it is stored in parts of at most this many bytes of its gzipped body. A NATS message
// is at most 1 MiB by default (max_payload), headers included; 768 KiB leaves room for the
// headers and for a JSON value's base64.
const snapshotPartSize = 768 << 10

// errBehindLog is wrapped (with ErrSnapshotInvalid) by the rejection of a snapshot whose
// sequence the log's retention dropped together with the room's events right after it: the
// log can no longer continue it.
var errBehindLog = errors.New("the log's retention dropped the events after it")

// partKey is the key of part i of the snapshot stored under key: one token more, so listing
// a room's snapshots ("<room>.*.*") does not see parts.
func partKey(key string, i int) string { return key + ".p" + strconv.Itoa(i) }

// putParts stores the gzipped body of sealed in parts under key's part keys and returns the
// head to store under key: the body's digest and each part's size and digest. The head is
// written last by Put, so a head names parts that were all stored. A part already stored
// (another writer of the same snapshot) must hold the same bytes.
func (s *SnapshotStore) putParts(ctx context.Context, key string, sealed sealedSnapshot) ([]byte, error) {
	if sealed.Zipped == nil {
		return nil, fmt.Errorf("a body of %d bytes is over %d and not compressed", len(sealed.Body), snapshotPartSize)
	}
	head := sealedSnapshot{Digest: sealed.Digest}
	for i, off := 0, 0; off < len(sealed.Zipped); i, off = i+1, off+snapshotPartSize {
		part := sealed.Zipped[off:min(off+snapshotPartSize, len(sealed.Zipped))]
		sum := sha256.Sum256(part)
		head.Parts = append(head.Parts, snapshotPart{Size: len(part), Digest: hex.EncodeToString(sum[:])})
		pk := partKey(key, i)
		_, err := s.kv.Create(ctx, pk, part)
		if errors.Is(err, jetstream.ErrKeyExists) {
			var e jetstream.KeyValueEntry
			if e, err = s.kv.Get(ctx, pk); err == nil && !bytes.Equal(e.Value(), part) {
				err = fmt.Errorf("another writer stored other bytes")
			}
		}
		if err != nil {
			return nil, fmt.Errorf("part %s: %w", pk, err)
		}
	}
	b, err := json.Marshal(head)
	if err != nil {
		return nil, fmt.Errorf("head: %w", err)
	}
	return b, nil
}

// read reads the snapshot stored under key, its parts joined when it is parted, and decodes
// it (digest and consistency; not the log). A missing or edited part makes it invalid. What it
// allocates is bounded by maxSnapshotBody whatever the head says.
func (s *SnapshotStore) read(ctx context.Context, key string) (RoomSnapshot, error) {
	e, err := s.kv.Get(ctx, key)
	if err != nil {
		return RoomSnapshot{}, fmt.Errorf("projections: read snapshot %s: %w", key, err)
	}
	var sealed sealedSnapshot
	if err := json.Unmarshal(e.Value(), &sealed); err != nil {
		return RoomSnapshot{}, fmt.Errorf("%w: %w", ErrSnapshotInvalid, err)
	}
	if sealed.Parts != nil {
		if sealed.Zipped, err = s.readParts(ctx, key, sealed.Parts); err != nil {
			return RoomSnapshot{}, err
		}
		sealed.Body, sealed.Parts = nil, nil
	}
	return decodeSealed(sealed)
}

// readParts reads and checks the parts a head names and joins them.
func (s *SnapshotStore) readParts(ctx context.Context, key string, parts []snapshotPart) ([]byte, error) {
	total := 0
	for i, p := range parts {
		if p.Size <= 0 || p.Size > maxSnapshotBody {
			return nil, fmt.Errorf("%w: part %d of %d bytes", ErrSnapshotInvalid, i, p.Size)
		}
		total += p.Size
		if total > maxSnapshotBody {
			return nil, fmt.Errorf("%w: %d parts of over %d bytes in all, more than a snapshot may hold",
				ErrSnapshotInvalid, len(parts), maxSnapshotBody)
		}
	}
	zipped := make([]byte, 0, total)
	for i, p := range parts {
		pk := partKey(key, i)
		e, err := s.kv.Get(ctx, pk)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return nil, fmt.Errorf("%w: part %s is missing", ErrSnapshotInvalid, pk)
		}
		if err != nil {
			return nil, fmt.Errorf("projections: read snapshot part %s: %w", pk, err)
		}
		sum := sha256.Sum256(e.Value())
		if len(e.Value()) != p.Size || hex.EncodeToString(sum[:]) != p.Digest {
			return nil, fmt.Errorf("%w: part %s does not match its head's digest", ErrSnapshotInvalid, pk)
		}
		zipped = append(zipped, e.Value()...)
	}
	return zipped, nil
}

// checkLink checks a snapshot whose event the log does not hold. Below the log's first
// retained sequence (its retention dropped the event), the room's first retained event after
// the snapshot must chain onto the snapshot's head (its prevhash is the head): then no event
// of the room lies between, and the snapshot plus the retained tail is the room. When the log
// holds no event of the room after it, the snapshot is all there is of the room and nothing
// in the log can contradict it: it is accepted. At or above the first retained sequence, a
// sequence with no event is a snapshot of another log.
func checkLink(ctx context.Context, stream jetstream.Stream, snap RoomSnapshot) error {
	info, err := stream.Info(ctx)
	if err != nil {
		return fmt.Errorf("projections: stream %s: %w", eventlog.StreamEvents, err)
	}
	if snap.Seq >= info.State.FirstSeq {
		return fmt.Errorf("%w: the log holds no event at %d", ErrSnapshotInvalid, snap.Seq)
	}
	next, err := stream.GetMsg(ctx, snap.Seq+1, jetstream.WithGetMsgSubject(eventlog.RoomEventsFilter(snap.Room)))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("projections: first event of %s after %d: %w", snap.Room, snap.Seq, err)
	}
	var link struct {
		PrevHash string `json:"prevhash"`
	}
	if err := json.Unmarshal(next.Data, &link); err != nil {
		return fmt.Errorf("projections: event %d on %s: %w", next.Sequence, next.Subject, err)
	}
	if link.PrevHash != snap.Head {
		return fmt.Errorf("%w: %w: the log starts at %d, and the room's first event after %d, at %d, does not follow the snapshot's head",
			ErrSnapshotInvalid, errBehindLog, info.State.FirstSeq, snap.Seq, next.Sequence)
	}
	return nil
}
