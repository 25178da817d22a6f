package projections

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"
)

// A room snapshot is the room's folded state at one sequence of the log, so that a replay,
// `/state`, or a projection starting cold folds the snapshot plus the events after it instead
// of the room's whole history. It is bound to the log by the room's hash-chain head at that
// sequence (events.Hash of the event stored there): a snapshot of another log, of another
// room, or of a log rewritten since, does not match the event the log holds at its sequence.
// Its digest covers every other byte of it, so an edited snapshot does not decode. An edit
// with a recomputed digest is caught only by VerifySnapshot, which folds the log up to the
// snapshot's sequence and compares (the fold is the definition; the digest is a seal).

// SnapshotEvery is how many of a room's events lie between two of its snapshots: a replay
// reads at most about this many events after the nearest snapshot (measured: a 1,000,000-event
// room replays to any instant in well under the 3 s, see docs/benchmarks.md).
const SnapshotEvery = 10_000

// ErrSnapshotInvalid is wrapped by every error that rejects a snapshot: its digest does not
// match its content, it contradicts itself, or it does not match the log.
var ErrSnapshotInvalid = errors.New("projections: snapshot invalid")

// RoomSnapshot is a room's folded state at a log sequence.
type RoomSnapshot struct {
	Room string `json:"room"`
	// Seq is the stream sequence of the last event folded in (the state's last_seq).
	Seq uint64 `json:"seq"`
	// Head is events.Hash of that event's stored bytes: the room's hash-chain head at Seq.
	Head string `json:"head"`
	// MaxTime is the latest event time folded in. The snapshot is the state at any instant at
	// or after it (up to the next event stamped later): the state at T folds the log up to its
	// first event stamped after T, and none of the snapshot's is.
	MaxTime time.Time `json:"max_time"`
	// State is the folded room.
	State Room `json:"-"`
}

// snapshotBody is a snapshot as encoded: the room with its maps (which Room's own JSON, the
// rooms bucket's record, leaves to separate keys).
type snapshotBody struct {
	RoomSnapshot
	State  Room                    `json:"state"`
	Peers  map[string]Peer         `json:"peers"`
	Tracks map[string]Track        `json:"tracks"`
	Subs   map[string]Subscription `json:"subs"`
}

// sealedSnapshot is what the snapshot store holds: the body's exact bytes and their digest.
// A body over snapshotZipAbove is stored gzipped in Zipped instead of Body (the digest is
// still the plain body's): a room's state is repetitive JSON that shrinks about tenfold, so a
// room of tens of thousands of subscriptions still fits one message of the bucket. A sealed
// snapshot still larger than snapshotPartSize is stored in parts (SnapshotStore.Put): its key
// then holds a head with the digest and Parts, each part's gzipped bytes under a key of its own.
type sealedSnapshot struct {
	Digest string          `json:"digest"` // lowercase hex SHA-256 of the plain body
	Body   json.RawMessage `json:"body,omitempty"`
	Zipped []byte          `json:"zipped,omitempty"` // the body, gzipped
	Parts  []snapshotPart  `json:"parts,omitempty"`  // Zipped, cut in parts stored apart
}

// snapshotPart is one part of a parted snapshot's gzipped body, as its head names it.
type snapshotPart struct {
	Size   int    `json:"size"`   // bytes
	Digest string `json:"digest"` // lowercase hex SHA-256 of the part's bytes
}

// snapshotZipAbove is the body size above which a snapshot is stored gzipped, and
// maxSnapshotBody the largest body a snapshot may hold or unzip to, and the most its parts
// may add up to (a bound on what a corrupt or hostile entry of the bucket can make a reader
// allocate, and on what a writer stores).
const (
	snapshotZipAbove = 64 << 10
	maxSnapshotBody  = 256 << 20
)

// ErrSnapshotTooLarge is returned when a room's state is over maxSnapshotBody (256 MiB) of
// JSON: such a room has no snapshot (its replays fold its log).
var ErrSnapshotTooLarge = errors.New("projections: room state too large for a snapshot")

// NewRoomSnapshot is the snapshot of state, whose last folded event is stored with hash head,
// and whose events' latest time is maxTime. The state is copied.
func NewRoomSnapshot(state Room, head string, maxTime time.Time) (RoomSnapshot, error) {
	if !state.Exists() {
		return RoomSnapshot{}, fmt.Errorf("%w: room %s has folded no event from the log", ErrSnapshotInvalid, state.Room)
	}
	if head == "" {
		return RoomSnapshot{}, fmt.Errorf("%w: room %s at %d: no chain head", ErrSnapshotInvalid, state.Room, state.LastSeq)
	}
	return RoomSnapshot{Room: state.Room, Seq: state.LastSeq, Head: head, MaxTime: maxTime.UTC(), State: state.Clone()}, nil
}

// Encode seals the snapshot: its JSON body and the body's digest.
func (s RoomSnapshot) Encode() ([]byte, error) {
	sealed, err := s.seal()
	if err != nil {
		return nil, err
	}
	b, err := json.Marshal(sealed)
	if err != nil {
		return nil, fmt.Errorf("projections: encode snapshot of %s at %d: %w", s.Room, s.Seq, err)
	}
	return b, nil
}

// seal encodes the body, gzipped when it is over snapshotZipAbove, and its digest.
func (s RoomSnapshot) seal() (sealedSnapshot, error) {
	body, err := json.Marshal(snapshotBody{RoomSnapshot: s, State: s.State, Peers: s.State.Peers, Tracks: s.State.Tracks, Subs: s.State.Subs})
	if err != nil {
		return sealedSnapshot{}, fmt.Errorf("projections: encode snapshot of %s at %d: %w", s.Room, s.Seq, err)
	}
	if len(body) > maxSnapshotBody {
		return sealedSnapshot{}, fmt.Errorf("%w: room %s at %d is %d bytes of JSON, over the %d a snapshot may hold",
			ErrSnapshotTooLarge, s.Room, s.Seq, len(body), maxSnapshotBody)
	}
	sum := sha256.Sum256(body)
	sealed := sealedSnapshot{Digest: hex.EncodeToString(sum[:]), Body: body}
	if len(body) > snapshotZipAbove {
		var zb bytes.Buffer
		zw := gzip.NewWriter(&zb)
		if _, err := zw.Write(body); err != nil {
			return sealedSnapshot{}, fmt.Errorf("projections: compress snapshot of %s at %d: %w", s.Room, s.Seq, err)
		}
		if err := zw.Close(); err != nil {
			return sealedSnapshot{}, fmt.Errorf("projections: compress snapshot of %s at %d: %w", s.Room, s.Seq, err)
		}
		sealed.Body, sealed.Zipped = nil, zb.Bytes()
	}
	return sealed, nil
}

// DecodeSnapshot reads a sealed snapshot and checks its digest and its consistency (state of
// its room, at its sequence). It does not look at the log: see SnapshotStore. The head of a
// snapshot stored in parts is refused: SnapshotStore reads the parts.
func DecodeSnapshot(b []byte) (RoomSnapshot, error) {
	var sealed sealedSnapshot
	if err := json.Unmarshal(b, &sealed); err != nil {
		return RoomSnapshot{}, fmt.Errorf("%w: %w", ErrSnapshotInvalid, err)
	}
	if sealed.Parts != nil {
		return RoomSnapshot{}, fmt.Errorf("%w: stored in %d parts, which only the snapshot store reads", ErrSnapshotInvalid, len(sealed.Parts))
	}
	return decodeSealed(sealed)
}

// decodeSealed checks a sealed snapshot (its parts, if any, joined into Zipped).
func decodeSealed(sealed sealedSnapshot) (RoomSnapshot, error) {
	if sealed.Zipped != nil {
		body, err := unzipBody(sealed.Zipped)
		if err != nil {
			return RoomSnapshot{}, err
		}
		sealed.Body = body
	}
	sum := sha256.Sum256(sealed.Body)
	if hex.EncodeToString(sum[:]) != sealed.Digest {
		return RoomSnapshot{}, fmt.Errorf("%w: its digest does not match its content", ErrSnapshotInvalid)
	}
	var body snapshotBody
	if err := json.Unmarshal(sealed.Body, &body); err != nil {
		return RoomSnapshot{}, fmt.Errorf("%w: %w", ErrSnapshotInvalid, err)
	}
	s := body.RoomSnapshot
	s.State = body.State
	s.State.Peers, s.State.Tracks, s.State.Subs = body.Peers, body.Tracks, body.Subs
	s.State = s.State.Clone() // nil maps become empty ones
	switch {
	case s.State.Room != s.Room:
		return RoomSnapshot{}, fmt.Errorf("%w: the state of room %q in a snapshot of room %q", ErrSnapshotInvalid, s.State.Room, s.Room)
	case s.State.LastSeq != s.Seq || s.Seq == 0:
		return RoomSnapshot{}, fmt.Errorf("%w: state at %d in a snapshot at %d", ErrSnapshotInvalid, s.State.LastSeq, s.Seq)
	case s.Head == "":
		return RoomSnapshot{}, fmt.Errorf("%w: no chain head", ErrSnapshotInvalid)
	}
	return s, nil
}

// unzipBody reads a gzipped snapshot body, at most maxSnapshotBody bytes of it.
func unzipBody(zipped []byte) ([]byte, error) {
	zr, err := gzip.NewReader(bytes.NewReader(zipped))
	if err != nil {
		return nil, fmt.Errorf("%w: compressed body: %w", ErrSnapshotInvalid, err)
	}
	body, err := io.ReadAll(io.LimitReader(zr, maxSnapshotBody+1))
	if err != nil {
		return nil, fmt.Errorf("%w: compressed body: %w", ErrSnapshotInvalid, err)
	}
	if len(body) > maxSnapshotBody {
		return nil, fmt.Errorf("%w: compressed body over %d bytes", ErrSnapshotInvalid, maxSnapshotBody)
	}
	return body, nil
}

// usableAt reports whether the snapshot is the state at instant at (zero: now) as StateAt
// defines it, up to its sequence.
func (s RoomSnapshot) usableAt(at time.Time) bool { return at.IsZero() || !s.MaxTime.After(at) }

// snapshotFolder folds one room's stored events after a snapshot (or from nothing), keeping
// what the next snapshot needs: the latest event time and the head's bytes.
type snapshotFolder struct {
	room    Room
	maxTime time.Time
	head    string
	folded  int // events folded since the start or the last snapshot taken
}

func newSnapshotFolder(room string, from *RoomSnapshot) *snapshotFolder {
	f := &snapshotFolder{room: NewRoom(room)}
	if from != nil {
		f.room, f.maxTime, f.head = from.State.Clone(), from.MaxTime, from.Head
	}
	return f
}
