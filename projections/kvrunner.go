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
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetmedia/jetmedia/events"
	"github.com/jetmedia/jetmedia/pipeline/eventlog"
)

// KVRunner folds events into a KV bucket. It is the handler of a durable consumer that
// hands events over in batches (HandleBatch on an eventlog.BatchConsumer, as the node runs
// it) or acknowledges in batches (Handle on a subscriber with
// eventlog.EventSubscriberConfig.AckBatch): events are folded into
// each room's state in memory, and at the end of a batch every changed key is written once,
// before the batch is acknowledged. The consumer's ack floor is thus where it resumes after a
// restart, and each room's last_seq makes a redelivered event a no-op.
//
// Several runners (one per node) may write one bucket. Every write is conditional on the
// revision the runner last saw of the key, and a room's writes start with a claim: the room
// record rewritten at the revision the runner knows, with the runner's id as "writer", and
// end with the new record, without it. A runner that is behind another fails its claim before
// it writes anything, reloads the room from the bucket and folds its events again (those the
// other applied are no-ops); one that loads a room claimed by another waits until the other
// has written its record (or, after staleClaim, takes over a claim whose writer died). So a
// room's other keys are never older than its record's last_seq, which is what a reload relies
// on: folding the events after last_seq again brings every key to its value.
type KVRunner struct {
	kv       jetstream.KeyValue
	log      *slog.Logger
	maxRooms int
	id       string // the runner's "writer" in its claims

	mu    sync.Mutex // one event or batch at a time (Handle, Apply)
	rooms map[string]*roomCache
	dirty map[string]bool // rooms folded past what the bucket holds
	// waiting are the events of rooms not loaded yet, in log order: loaded together at the
	// batch's end rather than one round trip each as they come.
	waiting map[string][]events.Envelope

	// snaps, when set, seeds a room the bucket has never held with its latest snapshot (a
	// cold projection folds only the events after it), and receives a snapshot of every room
	// whose whole history the runner knows (folded from nothing or from a snapshot) each
	// snapEvery events; folded hears how many events of each other room every written batch
	// folded (a Snapshotter, which reads such a room's log to snapshot it).
	snaps     *SnapshotStore
	snapEvery int
	folded    func(room string, n int)
	// lastRaw is the last stored event of each room in the batch being handled (valid during
	// HandleBatch): a snapshot's head is its hash.
	lastRaw map[string]eventlog.StoredEvent
	// logJS, when set, reads the events a room's state read from the bucket lacks (catchUp).
	logJS jetstream.JetStream
}

// roomCache is one room as the runner knows it.
type roomCache struct {
	room Room // folded state; ahead of the bucket while the room is dirty
	// entries and revs are the room's keys as the bucket holds them (last read or written)
	// and their revisions; a key without a revision is created (it is new, or deleted).
	entries map[string][]byte
	revs    map[string]uint64
	// pending are the events folded since the bucket was last written: folded again onto the
	// bucket's state when another writer moved the room.
	pending []events.Envelope
	// claimedBy is the writer of the claim the bucket's record holds ("": none), since
	// claimedAt.
	claimedBy string
	claimedAt time.Time
	// seeded: the state came from a snapshot, not the bucket, which must be written.
	seeded bool
	// maxKnown: the runner knows the latest event time of the room's whole history, maxTime
	// (it folded the room from nothing or from a snapshot), so it can snapshot the room
	// itself; sinceSnap counts the events folded since its last snapshot.
	maxKnown  bool
	maxTime   time.Time
	sinceSnap int
}

// claimRecord is a room record with the writer that claimed it.
type claimRecord struct {
	Room
	Writer string `json:"writer,omitempty"`
}

// staleClaim is how long a claim may stand before another runner takes the room over: a
// runner writes a room's keys in milliseconds, so one that has not finished by then died.
const staleClaim = 5 * time.Second

// errClaimed means another runner is writing the room.
var errClaimed = errors.New("projections: another runner is writing the room")

// DefaultCachedRooms is how many rooms' states a KVRunner keeps in memory at most between
// batches (the rooms of one batch are all kept until it is written).
const DefaultCachedRooms = 4096

// KVAckBatch is the AckBatch a KVRunner's consumer should have: the most events folded
// before the changed keys are written. Its MaxAckPending must be at least as big.
const KVAckBatch = 512

// KVBatch is the most events a node's rooms projection folds before it writes the changed
// keys (its eventlog.BatchConsumerConfig.Batch). A batch ends earlier at the newest event, so
// it only fills while the projection is behind; then each room's keys are written once per
// many of its events. Measured catching up 10,000 events of 64 rooms on the loaded 2-core
// machine: 1.3-1.5k events/s with batches of 512, 2.2-3.5k/s with 4096 (docs/benchmarks.md).
const KVBatch = 4096

// ReadyLag is how many events a node's rooms projection may be behind the log while the node
// says it is ready (/readyz): two batches, which a projection keeping pace with a sustained
// append rate may be behind at any moment. A node catching up from further back is not ready.
const ReadyLag = 2 * KVBatch

// kvWriters is how many KV writes of a batch are in flight at once.
const kvWriters = 64

// maxConflicts bounds the reload-and-retry rounds of one room in one batch.
const maxConflicts = 8

// NewKVRunner returns a runner writing into kv.
func NewKVRunner(kv jetstream.KeyValue, log *slog.Logger) *KVRunner {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &KVRunner{kv: kv, log: log.With("component", "projection"), maxRooms: DefaultCachedRooms,
		id: events.NewID(), rooms: map[string]*roomCache{}, dirty: map[string]bool{},
		waiting: map[string][]events.Envelope{}}
}

// UseSnapshots makes the runner start rooms the bucket has never held from their latest valid
// snapshot in store, store a snapshot every `every` events (0: SnapshotEvery) of the rooms
// whose whole history it knows (started from nothing or from a snapshot, with HandleBatch),
// and tell folded (if not nil) how many events of each other room every written batch folded.
// Call it before the first event.
func (k *KVRunner) UseSnapshots(store *SnapshotStore, every int, folded func(room string, n int)) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if every <= 0 {
		every = SnapshotEvery
	}
	k.snaps, k.snapEvery, k.folded = store, every, folded
}

// UseLog makes the runner check every room state it reads from the bucket against the log
// (through js, at the EVENTS stream's leader) before it folds events onto it: the events of
// the room between the state's last_seq and the first event handed over are read from the log
// and folded first. Without it a runner trusts that the bucket holds every event of a room
// before the ones it is handed, which does not hold when two runners share the durable for a
// moment (a lease hand-over: each is handed part of the events) or when a read of the bucket
// misses what it holds (a replica behind its leader). Call it before the first event.
func (k *KVRunner) UseLog(js jetstream.JetStream) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.logJS = js
}

// Handle is the watermill handler: one stored event per message. It writes what it folded
// when the message ends its batch (eventlog.MetaBatchEnd not "0": also a message from a
// subscriber that does not batch).
func (k *KVRunner) Handle(msg *message.Message) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.handle(msg); err != nil {
		return err
	}
	if msg.Metadata.Get(eventlog.MetaBatchEnd) == "0" {
		return nil
	}
	return k.flush(msg.Context())
}

// HandleBatch is the eventlog.BatchHandler: it folds a batch of stored events and writes
// every changed key once before the batch is acknowledged. A batch handed over again after a
// failed write folds as a no-op what was folded already (each room's last_seq).
func (k *KVRunner) HandleBatch(ctx context.Context, batch []eventlog.StoredEvent) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.snaps != nil {
		k.lastRaw = make(map[string]eventlog.StoredEvent)
		defer func() { k.lastRaw = nil }()
	}
	for _, st := range batch {
		if k.already(st) {
			continue
		}
		if k.lastRaw != nil {
			if room, ok := subjectRoom(st.Subject); ok {
				k.lastRaw[room] = st
			}
		}
		e, err := events.Decode(st.Data)
		if err != nil {
			// As in handle: a malformed event never becomes valid; skip it loudly.
			k.log.Error("skipping undecodable event", "subject", st.Subject, "seq", st.Seq, "err", err)
			continue
		}
		e.Seq = st.Seq
		k.fold(e)
	}
	start := time.Now()
	err := k.flush(ctx)
	k.log.Debug("batch folded", "events", len(batch), "first_seq", batch[0].Seq, "took", time.Since(start), "err", err)
	return err
}

// already reports, without decoding the event, whether its room's state in memory has folded
// it: a cold projection seeded from snapshots reads the events before them as cheap no-ops.
func (k *KVRunner) already(st eventlog.StoredEvent) bool {
	room, ok := subjectRoom(st.Subject)
	if !ok {
		return false
	}
	c, ok := k.rooms[room]
	return ok && len(k.waiting[room]) == 0 && st.Seq <= c.room.LastSeq
}

// subjectRoom is the room of an event subject (ev.<room>.<kind>).
func subjectRoom(subject string) (string, bool) {
	rest, ok := strings.CutPrefix(subject, "ev.")
	if !ok {
		return "", false
	}
	room, _, ok := strings.Cut(rest, ".")
	return room, ok
}

func (k *KVRunner) handle(msg *message.Message) error {
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
	k.fold(e)
	return nil
}

// Apply folds one stored event (with Seq set) into the bucket, with any events folded before
// it and not written yet.
func (k *KVRunner) Apply(ctx context.Context, e events.Envelope) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.fold(e)
	return k.flush(ctx)
}

// Cached is the number of rooms whose state the runner keeps in memory.
func (k *KVRunner) Cached() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return len(k.rooms)
}

// fold folds e into its room's state in memory, or queues it until the room is loaded (at the
// batch's end, all the batch's new rooms at once).
func (k *KVRunner) fold(e events.Envelope) {
	if e.Seq == 0 {
		return // not read from the log: nothing to checkpoint it with
	}
	c, ok := k.rooms[e.Room]
	if !ok || len(k.waiting[e.Room]) > 0 {
		k.waiting[e.Room] = append(k.waiting[e.Room], e)
		return
	}
	k.foldInto(c, e)
}

// foldInto folds e into c in place: the state is the runner's own, and a fold that fails
// leaves it as it was.
func (k *KVRunner) foldInto(c *roomCache, e events.Envelope) {
	changed, err := foldInPlace(&c.room, e)
	if err != nil {
		// The event's data does not decode (the envelope did): it never will, and the consumer
		// hands events over in order, so retrying it would stall every room. Skip it loudly;
		// it is in the log for anyone to inspect.
		k.log.Error("skipping event with invalid data", "id", e.ID, "type", e.Type, "seq", e.Seq, "err", err)
		return
	}
	if changed {
		c.pending = append(c.pending, e)
		k.dirty[e.Room] = true
		c.sinceSnap++
		if e.Time.After(c.maxTime) {
			c.maxTime = e.Time
		}
	}
}

// loadWaiting reads the rooms with queued events from the bucket, in parallel, and folds
// their events.
func (k *KVRunner) loadWaiting(ctx context.Context) error {
	var load []string
	for room := range k.waiting {
		if _, ok := k.rooms[room]; !ok {
			load = append(load, room)
		}
	}
	loaded := make([]*roomCache, len(load))
	gaps := make([][]events.Envelope, len(load))
	errs := make([]error, len(load))
	todo := make(chan int)
	var wg sync.WaitGroup
	for range min(len(load), kvWriters) {
		wg.Go(func() {
			for i := range todo {
				room := load[i]
				if loaded[i], errs[i] = k.load(ctx, room); errs[i] == nil {
					gaps[i], errs[i] = k.missing(ctx, room, loaded[i].room.LastSeq, k.waiting[room])
				}
			}
		})
	}
	for i := range load {
		todo <- i
	}
	close(todo)
	wg.Wait()
	for i, room := range load {
		if errs[i] != nil {
			continue
		}
		// A room is kept only with the events it lacked: loaded without them, a retry would
		// fold the batch onto the incomplete state.
		k.rooms[room] = loaded[i]
		if loaded[i].seeded {
			k.dirty[room] = true
		}
		for _, e := range gaps[i] {
			k.foldInto(loaded[i], e)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err // the rooms loaded stay; the others are read again on the retry
	}
	for _, room := range slices.Sorted(maps.Keys(k.waiting)) {
		for _, e := range k.waiting[room] {
			k.foldInto(k.rooms[room], e)
		}
		delete(k.waiting, room)
	}
	return nil
}

// missing returns the room's events in the log after last (the state read from the bucket)
// and before the first of next (the events to fold) after last, read one by one from the
// EVENTS stream's leader (not a replica, which may be behind: direct gets and consumers are
// served by any of them). None without UseLog, or when nothing of next comes after last.
//
// The bucket holds every event of a room up to the projection's ack floor only while one
// runner writes it. When two runners share the durable for a moment (the lease moved, and the
// runner that lost it folds what it was handed until it notices), each is handed part of the
// events: the first of a room's events that one of them folds may follow events the other
// has not written yet. Folded onto the state read from the bucket, that event put the room
// past them, and the other runner's write, reloaded onto that state, folded them as
// redeliveries: they were lost (a room record without created_at and node after a kill,
// issue 13). A read of the bucket that misses what it holds (an absent room) is repaired the
// same way: the whole room is folded from the log (from its snapshot, if the runner has one).
func (k *KVRunner) missing(ctx context.Context, room string, last uint64, next []events.Envelope) ([]events.Envelope, error) {
	if k.logJS == nil {
		return nil, nil
	}
	i := slices.IndexFunc(next, func(e events.Envelope) bool { return e.Seq > last })
	if i < 0 || next[i].Seq == last+1 {
		return nil, nil
	}
	before := next[i].Seq
	var gap []events.Envelope
	for seq := last; ; {
		st, ok, err := eventlog.NextRoomEvent(ctx, k.logJS, room, seq+1)
		if err != nil {
			return nil, fmt.Errorf("projections: room %s: events after %d: %w", room, seq, err)
		}
		if !ok || st.Seq >= before {
			break
		}
		seq = st.Seq
		e, err := events.Decode(st.Data)
		if err != nil {
			k.log.Error("skipping undecodable event", "subject", st.Subject, "seq", st.Seq, "err", err)
			continue
		}
		e.Seq = st.Seq
		gap = append(gap, e)
	}
	if len(gap) > 0 {
		k.log.Warn("room read from the bucket lacks events before those handed over; folded them from the log",
			"room", room, "bucket_last_seq", last, "first_handed", before, "folded_from_log", len(gap),
			"from_seq", gap[0].Seq, "to_seq", gap[len(gap)-1].Seq)
	}
	return gap, nil
}

// load reads a room from the bucket, or, when the bucket has never held it, from its latest
// valid snapshot (if the runner uses snapshots and there is one).
func (k *KVRunner) load(ctx context.Context, room string) (*roomCache, error) {
	c, err := loadCache(ctx, k.kv, room)
	if err != nil || k.snaps == nil || c.room.Exists() {
		return c, err
	}
	snap, ok, err := k.snaps.Nearest(ctx, room, time.Time{})
	if err != nil {
		return nil, err
	}
	c.maxKnown = true // from nothing, or from the snapshot
	if ok {
		c.room, c.seeded, c.maxTime = snap.State, true, snap.MaxTime
		k.log.Info("room starts from its snapshot", "room", room, "seq", snap.Seq)
	}
	return c, nil
}

// loadCache reads a room's keys, with their revisions, from the bucket.
func loadCache(ctx context.Context, kv jetstream.KeyValue, room string) (*roomCache, error) {
	var c *roomCache
	reset := func() {
		c = &roomCache{room: NewRoom(room), entries: map[string][]byte{}, revs: map[string]uint64{}}
	}
	err := ReadInitial(ctx, kv, room+".>", reset, func(e jetstream.KeyValueEntry) error {
		if err := ApplyEntry(&c.room, e.Key(), e.Value()); err != nil {
			return err
		}
		c.entries[e.Key()], c.revs[e.Key()] = e.Value(), e.Revision()
		if e.Key() == RoomKey(room) {
			var cr claimRecord
			if err := json.Unmarshal(e.Value(), &cr); err != nil {
				return fmt.Errorf("decode %s: %w", e.Key(), err)
			}
			c.claimedBy, c.claimedAt = cr.Writer, e.Created()
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("projections: load room %s: %w", room, err)
	}
	return c, nil
}

// flush writes every dirty room's changed keys. A room whose writes conflict with another
// writer is reloaded and written again; one whose writes fail otherwise stays dirty (its
// cache says what the bucket holds) and the error is returned, so that the batch is not
// acknowledged and the next flush writes it.
func (k *KVRunner) flush(ctx context.Context) error {
	if err := k.loadWaiting(ctx); err != nil {
		return err
	}
	var errs []error
	todo := slices.Sorted(maps.Keys(k.dirty))
	for attempt := 0; len(todo) > 0; attempt++ {
		if attempt == maxConflicts {
			return fmt.Errorf("projections: rooms %v still conflict after %d attempts", todo, attempt)
		}
		var conflicts []string
		for room, err := range k.write(ctx, todo) {
			switch {
			case err == nil:
				delete(k.dirty, room)
				k.snapshot(ctx, room)
				k.rooms[room].pending = nil
				k.rooms[room].seeded = false
				if r := k.rooms[room].room; len(r.Peers)+len(r.Tracks)+len(r.Subs) == 0 {
					// Everyone left: keep nothing of the room (its next event reads the
					// record again), or the cache would hold every room ever projected.
					delete(k.rooms, room)
				}
			case isConflict(err):
				conflicts = append(conflicts, room)
			default:
				errs = append(errs, err)
			}
		}
		if len(conflicts) > 0 && attempt > 0 {
			// A claim of another runner stands for the milliseconds its writes take.
			select {
			case <-ctx.Done():
				return fmt.Errorf("projections: write rooms: %w", ctx.Err())
			case <-time.After(time.Duration(attempt) * 5 * time.Millisecond):
			}
		}
		for _, room := range conflicts {
			if err := k.reload(ctx, room); err != nil {
				return errors.Join(append(errs, err)...)
			}
		}
		todo = conflicts
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	k.evict()
	return nil
}

// snapshot stores a snapshot of a room just written when it is due and the runner knows its
// whole history, or else tells folded how many events it folded. A snapshot that cannot be
// stored is logged: the projection goes on, and the next is due at the room's next batch.
func (k *KVRunner) snapshot(ctx context.Context, room string) {
	c := k.rooms[room]
	if k.snaps == nil || len(c.pending) == 0 {
		return
	}
	if !c.maxKnown {
		if k.folded != nil {
			k.folded(room, len(c.pending))
		}
		return
	}
	raw, ok := k.lastRaw[room]
	if c.sinceSnap < k.snapEvery || !ok || raw.Seq != c.room.LastSeq {
		return
	}
	snap, err := NewRoomSnapshot(c.room, events.Hash(raw.Data), c.maxTime)
	if err == nil {
		err = k.snaps.Put(ctx, snap)
	}
	if err != nil {
		k.log.Warn("room snapshot not stored", "room", room, "seq", c.room.LastSeq, "err", err)
		return
	}
	c.sinceSnap = 0
	if _, err := k.snaps.prune(ctx, room, snap.Seq); err != nil {
		k.log.Warn("room snapshots not pruned", "room", room, "err", err)
	}
}

// reload replaces a room's cache with the bucket's state and folds its pending events again.
func (k *KVRunner) reload(ctx context.Context, room string) error {
	old := k.rooms[room]
	c, err := k.load(ctx, room)
	if err != nil {
		return err
	}
	gap, err := k.missing(ctx, room, c.room.LastSeq, old.pending)
	if err != nil {
		return err
	}
	pending := append(gap, old.pending...)
	for _, e := range pending {
		if c.room, err = Fold(c.room, e); err != nil {
			return err
		}
	}
	c.pending = pending
	k.rooms[room] = c
	return nil
}

// evict drops written rooms beyond the cache's bound; they are read again when an event of
// theirs comes.
func (k *KVRunner) evict() {
	for room := range k.rooms {
		if len(k.rooms) <= k.maxRooms {
			return
		}
		if !k.dirty[room] {
			delete(k.rooms, room)
		}
	}
}

func isConflict(err error) bool {
	return errors.Is(err, errClaimed) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) ||
		errors.Is(err, jetstream.ErrKeyExists)
}

// kvOp is one conditional write of a batch.
type kvOp struct {
	c     *roomCache
	room  string
	key   string
	value []byte // nil: delete
	err   error
	rev   uint64 // the key's revision after a put
}

// write writes rooms in three rounds, the writes of each in parallel: the claims (each room's
// record rewritten as the runner knows it), the changed keys of the rooms claimed, their new
// records. It returns each room's outcome.
func (k *KVRunner) write(ctx context.Context, rooms []string) map[string]error {
	out := make(map[string]error, len(rooms))
	next := make(map[string]map[string][]byte, len(rooms))
	var claims []*kvOp
	for _, room := range rooms {
		c := k.rooms[room]
		entries, err := Entries(c.room)
		if err != nil {
			out[room] = err
			continue
		}
		if c.claimedBy != "" && c.claimedBy != k.id && time.Since(c.claimedAt) < staleClaim {
			out[room] = fmt.Errorf("%w: %s (claimed by %s)", errClaimed, room, c.claimedBy)
			continue
		}
		claim, err := k.claim(c, room)
		if err != nil {
			out[room] = err
			continue
		}
		next[room] = entries
		claims = append(claims, &kvOp{c: c, room: room, key: RoomKey(room), value: claim})
	}
	var keys []*kvOp
	for _, op := range k.run(ctx, claims, out) {
		keys = append(keys, changedKeys(op.c, op.room, next[op.room])...)
	}
	k.run(ctx, keys, out)
	var records []*kvOp
	for room := range next {
		if _, failed := out[room]; !failed {
			records = append(records, &kvOp{c: k.rooms[room], room: room, key: RoomKey(room), value: next[room][RoomKey(room)]})
		}
	}
	k.run(ctx, records, out)
	for room := range next {
		if _, failed := out[room]; !failed {
			out[room] = nil
		}
	}
	return out
}

// claim is the record the bucket holds for c (that of an empty room when there is none: its
// last_seq 0 makes a reload fold everything again) with the runner as its writer.
func (k *KVRunner) claim(c *roomCache, room string) ([]byte, error) {
	held := NewRoom(room)
	if v, ok := c.entries[RoomKey(room)]; ok {
		if err := json.Unmarshal(v, &held); err != nil {
			return nil, fmt.Errorf("projections: decode %s: %w", RoomKey(room), err)
		}
	}
	b, err := json.Marshal(claimRecord{Room: held, Writer: k.id})
	if err != nil {
		return nil, fmt.Errorf("projections: encode claim of %s: %w", room, err)
	}
	return b, nil
}

// changedKeys are the writes that bring a room's keys other than its record from c.entries
// to next.
func changedKeys(c *roomCache, room string, next map[string][]byte) []*kvOp {
	var ops []*kvOp
	roomKey := RoomKey(room)
	for key, v := range next {
		if key != roomKey && !bytes.Equal(c.entries[key], v) {
			ops = append(ops, &kvOp{c: c, room: room, key: key, value: v})
		}
	}
	for key := range c.entries {
		if _, ok := next[key]; !ok && key != roomKey {
			ops = append(ops, &kvOp{c: c, room: room, key: key})
		}
	}
	return ops
}

// run carries out ops (at most kvWriters at once), records each room's first failure in out,
// updates the caches with what was written, and returns the ops of the rooms with no failure.
func (k *KVRunner) run(ctx context.Context, ops []*kvOp, out map[string]error) []*kvOp {
	todo := make(chan *kvOp)
	var wg sync.WaitGroup
	// A few workers rather than a goroutine per write: each grows its stack once.
	for range min(len(ops), kvWriters) {
		wg.Go(func() {
			for op := range todo {
				op.rev, op.err = k.do(ctx, op)
			}
		})
	}
	for _, op := range ops {
		if _, failed := out[op.room]; !failed {
			todo <- op
		}
	}
	close(todo)
	wg.Wait()
	var done []*kvOp
	for _, op := range ops {
		if op.err != nil {
			if _, failed := out[op.room]; !failed {
				out[op.room] = op.err
			}
			continue
		}
		if op.value == nil {
			delete(op.c.entries, op.key)
			delete(op.c.revs, op.key)
		} else {
			op.c.entries[op.key], op.c.revs[op.key] = op.value, op.rev
		}
		if op.key == RoomKey(op.room) {
			op.c.claimedBy = "" // ours, or written over by our record
		}
	}
	for _, op := range ops {
		if _, failed := out[op.room]; !failed {
			done = append(done, op)
		}
	}
	return done
}

// do is one conditional write: at the revision the cache knows, or a create.
func (k *KVRunner) do(ctx context.Context, op *kvOp) (uint64, error) {
	rev, known := op.c.revs[op.key]
	var err error
	switch {
	case op.value == nil:
		// Purged with an expiring marker, not deleted: a delete marker per ended peer, track
		// and subscription would stay in the bucket (and in JetStream's memory) for ever.
		err = k.kv.Purge(ctx, op.key, jetstream.LastRevision(rev), jetstream.PurgeTTL(eventlog.RoomsMarkerTTL))
		rev = 0
	case known:
		rev, err = k.kv.Update(ctx, op.key, op.value, rev)
	default:
		rev, err = k.kv.Create(ctx, op.key, op.value)
	}
	if err != nil {
		return 0, fmt.Errorf("projections: write %s: %w", op.key, err)
	}
	return rev, nil
}
