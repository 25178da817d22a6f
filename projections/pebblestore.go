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
	"github.com/jetmedia/jetmedia/pipeline/eventlog"
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

// StagedModel is a Model that folds the events of a batch in memory and writes the result
// once, when the batch commits: a model that keeps a few big values (one per room) would
// otherwise decode and encode them for every event. The runner uses NewStage when the model
// has it, and Model.Apply otherwise (also besides the router).
type StagedModel interface {
	Model
	// NewStage returns an empty stage for one batch.
	NewStage() Stage
}

// Stage is the in-memory part of one batch of a StagedModel.
type Stage interface {
	// Apply folds one event (Seq set) into the stage, reading what the stage does not hold
	// yet from r (the committed state). On error the stage must be as it was before.
	Apply(r pebble.Reader, e events.Envelope) error
	// Write adds the stage's writes to b; it may be called again on a new batch after a
	// failed commit.
	Write(b *pebble.Batch) error
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

// DropModel deletes every key of model (its data and its checkpoint), synced: the next runner
// of the model folds the log from its start. The model's runner must not be running.
func DropModel(db *pebble.DB, model string) error {
	// "0" is the byte after "/": the range is exactly the keys under "<model>/".
	if err := db.DeleteRange([]byte(model+"/"), []byte(model+"0"), pebble.Sync); err != nil {
		return fmt.Errorf("projections: drop model %s: %w", model, err)
	}
	return nil
}

// PebbleRunner feeds one Model from a durable consumer of the event log, in batches: it
// applies consecutive events into one pebble batch that also holds the model's checkpoint (the
// stream sequence of the last event in it) and commits it, synced, once it holds MaxBatch
// events or the event just applied was the newest the consumer had to deliver. Each event is
// acknowledged as soon as it is in the batch, before the commit: the acknowledgements are flow
// control only. The checkpoint is the truth: the node recreates the consumer at the checkpoint
// + 1 when it starts (see readmodels.Start), so the events of a batch lost in a crash are
// delivered again, and an event at or below the checkpoint (a redelivery) is skipped, so
// nothing is counted twice and nothing is lost.
//
// An event that fails (it does not decode, or Apply returns an error) must not take the events
// before it in the batch with it: the batch is rebuilt without it (the events before it are
// applied again into a fresh batch, Apply being a pure function of the batch's reads) and
// committed, then the error is returned, so that the router retries the event and at last parks
// it on the poison queue; the next event goes on from the committed checkpoint.
type PebbleRunner struct {
	db       *pebble.DB
	model    Model
	log      *slog.Logger
	maxBatch int

	mu      sync.Mutex // one event at a time, also when Apply is called besides the router
	loaded  bool       // applied holds the stored checkpoint
	applied uint64     // sequence of the newest event committed or in batch
	batch   *pebble.Batch
	stage   Stage             // a StagedModel's open batch (batch is then unused)
	pending []events.Envelope // the events in batch or stage, in order
}

// DefaultMaxBatch is how many events a PebbleRunner commits together at most.
const DefaultMaxBatch = 512

// RunnerInFlight is the MaxAckPending a PebbleRunner's consumer should have: the runner
// acknowledges an event once it is in the open batch, so this is prefetch, not risk; it
// needs a consumer of its own, recreated at the checkpoint + 1 when the runner starts.
const RunnerInFlight = 1024

// NewPebbleRunner returns a runner applying events to model in db. It does not own db.
func NewPebbleRunner(db *pebble.DB, model Model, log *slog.Logger) *PebbleRunner {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &PebbleRunner{db: db, model: model, maxBatch: DefaultMaxBatch,
		log: log.With("component", "readmodel", "model", model.Name())}
}

// SetMaxBatch sets how many events are committed together at most (1: each alone). It must be
// called before the runner handles events.
func (r *PebbleRunner) SetMaxBatch(n int) error {
	if n < 1 {
		return fmt.Errorf("projections: %s: batch size %d is below 1", r.model.Name(), n)
	}
	r.maxBatch = n
	return nil
}

// Name is the model's name.
func (r *PebbleRunner) Name() string { return r.model.Name() }

// Handle is the watermill handler: one stored event per message. An event that does not decode
// is an error, so that the router's poison queue parks it.
func (r *PebbleRunner) Handle(msg *message.Message) error {
	seq, err := strconv.ParseUint(msg.Metadata.Get(eventlog.MetaSeq), 10, 64)
	if err != nil {
		return fmt.Errorf("projections: %s: message %s has no stream sequence: %w", r.model.Name(), msg.UUID, err)
	}
	// Without the figure (not a JetStream message) the batch ends here.
	last := msg.Metadata.Get(eventlog.MetaPending) == "0" || msg.Metadata.Get(eventlog.MetaPending) == ""
	r.mu.Lock()
	defer r.mu.Unlock()
	applied, err := r.appliedSeq()
	if err != nil {
		return err
	}
	if seq <= applied {
		// Applied before a crash or restart, or a redelivery of an event in the open batch:
		// acknowledge and skip.
		if last {
			return r.commit()
		}
		return nil
	}
	e, err := events.Decode(msg.Payload)
	if err != nil {
		return errors.Join(fmt.Errorf("projections: %s: event at seq %d: %w", r.model.Name(), seq, err), r.commit())
	}
	e.Seq = seq
	if r.batch == nil && r.stage == nil && len(r.pending) > 0 {
		if err := r.rebuild(); err != nil { // a commit failed: redo it before going on
			return err
		}
	}
	if err := r.add(e); err != nil {
		return err
	}
	if last || len(r.pending) >= r.maxBatch {
		return r.commit()
	}
	return nil
}

// Apply applies one stored event (Seq set) unless the checkpoint is already at or past it,
// and commits it (with any open batch).
func (r *PebbleRunner) Apply(e events.Envelope) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	applied, err := r.appliedSeq()
	if err != nil {
		return err
	}
	if e.Seq <= applied {
		return r.commit()
	}
	if err := r.commit(); err != nil {
		return err
	}
	if err := r.add(e); err != nil {
		return err
	}
	return r.commit()
}

// Flush commits the open batch, if any: for a runner being stopped (what it does not commit
// is applied again after the restart).
func (r *PebbleRunner) Flush() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.commit()
}

func (r *PebbleRunner) appliedSeq() (uint64, error) {
	if !r.loaded {
		cp, err := Checkpoint(r.db, r.model.Name())
		if err != nil {
			return 0, err
		}
		r.applied, r.loaded = cp, true
	}
	return r.applied, nil
}

// add applies e into the open batch. When the model fails, the batch is rebuilt with the
// events before e and committed, and the model's error is returned.
func (r *PebbleRunner) add(e events.Envelope) error {
	name := r.model.Name()
	if sm, ok := r.model.(StagedModel); ok {
		if r.stage == nil {
			r.stage = sm.NewStage()
		}
		if err := r.stage.Apply(r.db, e); err != nil {
			// The stage is unchanged: commit the events before e, so that they do not wait
			// for the retries of e (e may be the newest event).
			err = fmt.Errorf("projections: %s: event %s (seq %d, %s): %w", name, e.ID, e.Seq, e.Type, err)
			return errors.Join(err, r.commit())
		}
		r.pending = append(r.pending, e)
		r.applied = e.Seq
		return nil
	}
	if r.batch == nil {
		r.batch = r.db.NewIndexedBatch()
	}
	if err := r.model.Apply(r.batch, e); err != nil {
		err = fmt.Errorf("projections: %s: event %s (seq %d, %s): %w", name, e.ID, e.Seq, e.Type, err)
		return errors.Join(err, r.rebuild())
	}
	if err := r.setCheckpoint(r.batch, e.Seq); err != nil {
		return errors.Join(err, r.rebuild())
	}
	r.pending = append(r.pending, e)
	r.applied = e.Seq
	return nil
}

func (r *PebbleRunner) setCheckpoint(b *pebble.Batch, seq uint64) error {
	var v [8]byte
	binary.BigEndian.PutUint64(v[:], seq)
	if err := b.Set(checkpointKey(r.model.Name()), v[:], nil); err != nil {
		return fmt.Errorf("projections: %s: checkpoint: %w", r.model.Name(), err)
	}
	return nil
}

// rebuild drops the open batch (which holds part of a failed event's writes), applies the
// pending events again into a new one and commits it.
func (r *PebbleRunner) rebuild() error {
	if r.batch != nil {
		_ = r.batch.Close()
	}
	r.batch = nil
	pending := r.pending
	r.pending = nil
	if len(pending) == 0 {
		return nil
	}
	r.batch = r.db.NewIndexedBatch()
	for _, p := range pending {
		if err := r.model.Apply(r.batch, p); err != nil {
			// Apply gave no error for p a moment ago: the model is not a pure fold of its
			// reads. Nothing of the batch is kept: the events are delivered again after a
			// restart, from the checkpoint.
			_ = r.batch.Close()
			r.batch = nil
			r.loaded = false
			r.log.Error("events applied and acknowledged are dropped; restart the node to apply them again",
				"from_seq", pending[0].Seq, "to_seq", pending[len(pending)-1].Seq, "err", err)
			return fmt.Errorf("projections: %s: event at seq %d failed when applied again: %w", r.model.Name(), p.Seq, err)
		}
	}
	if err := r.setCheckpoint(r.batch, pending[len(pending)-1].Seq); err != nil {
		return err
	}
	r.pending = pending
	return r.commit()
}

// commit commits the open batch, synced: its events are acknowledged already, so it must
// survive a crash of the machine, not only of the process (or the node's restart redelivers
// them, from the checkpoint).
func (r *PebbleRunner) commit() error {
	if r.stage != nil {
		return r.commitStage()
	}
	if r.batch == nil {
		if len(r.pending) > 0 {
			return r.rebuild() // after a failed commit
		}
		return nil
	}
	b := r.batch
	r.batch = nil
	defer func() { _ = b.Close() }()
	if len(r.pending) == 0 {
		return nil
	}
	if err := b.Commit(pebble.Sync); err != nil {
		// The events stay pending (they are acknowledged: nobody else has them); the next
		// event, or its retry, rebuilds the batch and commits it first.
		return fmt.Errorf("projections: %s: commit up to seq %d: %w", r.model.Name(), r.pending[len(r.pending)-1].Seq, err)
	}
	r.pending = clearPending(r.pending)
	return nil
}

// clearPending empties pending for the next batch, keeping its array but not the committed
// events it held: their decoded payloads would otherwise stay live until a later batch as long
// overwrote them (the churn soak's node heap held them).
func clearPending(pending []events.Envelope) []events.Envelope {
	clear(pending)
	return pending[:0]
}

// commitStage writes a StagedModel's stage and the checkpoint in one synced batch. After a
// failure the stage and the events stay, and the next commit tries again.
func (r *PebbleRunner) commitStage() error {
	if len(r.pending) == 0 {
		r.stage = nil
		return nil
	}
	last := r.pending[len(r.pending)-1].Seq
	b := r.db.NewBatch()
	defer func() { _ = b.Close() }()
	if err := r.stage.Write(b); err != nil {
		return fmt.Errorf("projections: %s: write up to seq %d: %w", r.model.Name(), last, err)
	}
	if err := r.setCheckpoint(b, last); err != nil {
		return err
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("projections: %s: commit up to seq %d: %w", r.model.Name(), last, err)
	}
	r.stage, r.pending = nil, clearPending(r.pending)
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
