package projections

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/jetmedia/jetmedia/events"
	"github.com/jetmedia/jetmedia/pipeline"
)

// The read models the KV cannot hold (indexes across rooms, figures over time) live in one
// pebble database per node, <data>/readmodels. Each model owns the keys under "<name>/":
// "<name>/cp" is its checkpoint (the stream sequence of the last event it applied, 8 bytes big
// endian) and "<name>/d/..." its data. Dropping a model is deleting its prefix.

// OpenPebble opens (creating it if needed) the read-model database in dir. fs is the
// filesystem (nil: the OS's; tests pass a crashable in-memory one).
func OpenPebble(dir string, fs vfs.FS, readOnly bool) (*pebble.DB, error) {
	opts := &pebble.Options{ReadOnly: readOnly, FS: fs, Logger: quietPebble{}}
	db, err := pebble.Open(dir, opts)
	if err != nil {
		return nil, fmt.Errorf("projections: open read models %s: %w", dir, err)
	}
	return db, nil
}

// quietPebble drops pebble's informational chatter; errors reach callers as errors.
type quietPebble struct{}

func (quietPebble) Infof(string, ...any)  {}
func (quietPebble) Errorf(string, ...any) {}
func (quietPebble) Fatalf(format string, args ...any) {
	panic(fmt.Sprintf("pebble: "+format, args...))
}

// Model is one pebble read model: a fold of events into keys under its prefix.
type Model interface {
	// Name is the model's key prefix (without the slash) and the name of its consumer.
	Name() string
	// Apply adds the writes of one event (Seq set) to b, an indexed batch: reads through b see
	// the writes of the events before it. Apply must write only under DataPrefix(Name()). An
	// error that is not worth retrying should still be returned: the event is parked on the
	// poison queue and the model goes on with the next one.
	Apply(b *pebble.Batch, e events.Envelope) error
}

// DataPrefix is where a model's data keys start.
func DataPrefix(model string) []byte { return []byte(model + "/d/") }

func checkpointKey(model string) []byte { return []byte(model + "/cp") }

// Checkpoint returns the stream sequence of the last event model applied (0: none).
func Checkpoint(r pebble.Reader, model string) (uint64, error) {
	v, closer, err := r.Get(checkpointKey(model))
	if errors.Is(err, pebble.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("projections: checkpoint of %s: %w", model, err)
	}
	defer func() { _ = closer.Close() }()
	if len(v) != 8 {
		return 0, fmt.Errorf("projections: checkpoint of %s is %d bytes", model, len(v))
	}
	return binary.BigEndian.Uint64(v), nil
}

// PebbleRunner feeds one Model from a durable consumer of the event log. For each event it
// commits, in one synced pebble batch, the model's writes and its checkpoint; the consumer's
// acknowledgement comes after. A crash between the two redelivers events the model already
// has: they are at or below the checkpoint, so they are acknowledged and skipped, and nothing
// is counted twice. The consumer's ack floor is only a hint of where to start.
type PebbleRunner struct {
	db    *pebble.DB
	model Model
	log   *slog.Logger

	mu sync.Mutex // one event at a time, also when Apply is called besides the router
}

// NewPebbleRunner returns a runner applying events to model in db. It does not own db.
func NewPebbleRunner(db *pebble.DB, model Model, log *slog.Logger) *PebbleRunner {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &PebbleRunner{db: db, model: model, log: log.With("component", "readmodel", "model", model.Name())}
}

// Name is the model's name.
func (r *PebbleRunner) Name() string { return r.model.Name() }

// Handle is the watermill handler: one stored event per message. An event that does not decode
// is an error, so that the router's poison queue parks it.
func (r *PebbleRunner) Handle(msg *message.Message) error {
	seq, err := strconv.ParseUint(msg.Metadata.Get(pipeline.MetaSeq), 10, 64)
	if err != nil {
		return fmt.Errorf("projections: %s: message %s has no stream sequence: %w", r.model.Name(), msg.UUID, err)
	}
	cp, err := Checkpoint(r.db, r.model.Name())
	if err != nil {
		return err
	}
	if seq <= cp {
		return nil // applied before a crash or restart; acknowledge and skip
	}
	e, err := events.Decode(msg.Payload)
	if err != nil {
		return fmt.Errorf("projections: %s: event at seq %d: %w", r.model.Name(), seq, err)
	}
	e.Seq = seq
	return r.Apply(e)
}

// Apply applies one stored event (Seq set) unless the checkpoint is already at or past it.
func (r *PebbleRunner) Apply(e events.Envelope) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	name := r.model.Name()
	cp, err := Checkpoint(r.db, name)
	if err != nil {
		return err
	}
	if e.Seq <= cp {
		return nil
	}
	b := r.db.NewIndexedBatch()
	defer func() { _ = b.Close() }()
	if err := r.model.Apply(b, e); err != nil {
		return fmt.Errorf("projections: %s: event %s (seq %d, %s): %w", name, e.ID, e.Seq, e.Type, err)
	}
	var v [8]byte
	binary.BigEndian.PutUint64(v[:], e.Seq)
	if err := b.Set(checkpointKey(name), v[:], nil); err != nil {
		return fmt.Errorf("projections: %s: checkpoint: %w", name, err)
	}
	// Synced: the consumer acknowledges the event once Handle returns, so the batch must
	// survive a crash of the machine, not only of the process.
	if err := b.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("projections: %s: commit seq %d: %w", name, e.Seq, err)
	}
	return nil
}

// getJSONKey reads a key through the batch (seeing its own writes); ok is false if absent.
func getKey(r pebble.Reader, key []byte) (v []byte, ok bool, err error) {
	val, closer, err := r.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	v = append([]byte(nil), val...)
	return v, true, closer.Close()
}
