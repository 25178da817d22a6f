package eventlog

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetmedia/jetmedia/events"
)

// appendAttempts bounds Append's retries on conflicts; with the doubling back-off the last
// waits up to 64 ms and all of them together about half a second.
const appendAttempts = 12

// ErrUnavailable means the log cannot take writes now (JetStream is out of storage or
// disabled, its store failed a write); the error says why. Nothing was appended: retry later.
var ErrUnavailable = errors.New("pipeline: the event log cannot take writes")

// Gate tells the appender whether the log can take writes; natsnode.Server is one. With it
// an append fails at once while the log cannot write, and one waiting for an ack is cancelled
// when the log fails, instead of waiting out its context for an answer JetStream never sends.
type Gate interface {
	// WriteErr is nil while writes can succeed, else why not.
	WriteErr() error
	// WriteFailed is closed when WriteErr turns non-nil.
	WriteFailed() <-chan struct{}
}

// WithGate makes the appender consult g (see Gate).
func WithGate(g Gate) AppenderOption {
	return func(a *Appender) { a.gate = g }
}

// ErrConflict means another writer appended to the room since the expected sequence.
var ErrConflict = errors.New("pipeline: room log moved on (optimistic concurrency conflict)")

// Appender writes events to the EVENTS stream. Every event is published with its id as
// Nats-Msg-Id (a retried append is stored once) and with the room's expected last sequence
// (Nats-Expected-Last-Subject-Sequence over ev.<room>.>), so two writers cannot interleave a
// room's history behind each other's back: a stale writer gets a conflict, re-reads the head and
// decides again.
type Appender struct {
	js jetstream.JetStream
	// node names the writer in room.created events the appender adds.
	node string

	gate Gate // nil: none
	// idle and now decide when a room's head is forgotten (see WithHeadIdle).
	idle time.Duration
	now  func() time.Time

	mu sync.Mutex
	// rooms holds the head of each room written recently; swept once per idle period.
	rooms     map[string]*roomHead
	lastSweep time.Time
}

type roomHead struct {
	mu   sync.Mutex
	last uint64
	// hash is the chain hash of the event at last (events.Hash), the next event's prevhash.
	hash  string
	known bool
	// users (appends in progress) and used (when the last one ended) are guarded by
	// Appender.mu: a head in use is never forgotten.
	users int
	used  time.Time
}

// DefaultHeadIdle is how long an appender remembers the head of a room it no longer writes.
const DefaultHeadIdle = time.Minute

// AppenderOption configures an Appender.
type AppenderOption func(*Appender)

// WithHeadIdle forgets a room's head once nothing was appended to the room for d (default
// DefaultHeadIdle), so that the appender's memory follows the rooms in use, not every room it
// ever wrote. The next append to a forgotten room reads its head from the stream again. d <= 0
// keeps the default.
func WithHeadIdle(d time.Duration) AppenderOption {
	return func(a *Appender) {
		if d > 0 {
			a.idle = d
		}
	}
}

// WithClock sets the clock the idle sweep reads (time.Now by default; for tests).
func WithClock(now func() time.Time) AppenderOption {
	return func(a *Appender) {
		if now != nil {
			a.now = now
		}
	}
}

// NewAppender returns an appender writing through js on behalf of node.
func NewAppender(js jetstream.JetStream, node string, opts ...AppenderOption) *Appender {
	a := &Appender{js: js, node: node, rooms: make(map[string]*roomHead), idle: DefaultHeadIdle, now: time.Now}
	for _, o := range opts {
		o(a)
	}
	a.lastSweep = a.now()
	return a
}

// head returns the room's head, marked in use until release.
func (a *Appender) head(room string) *roomHead {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.now()
	if now.Sub(a.lastSweep) >= a.idle {
		a.lastSweep = now
		maps.DeleteFunc(a.rooms, func(_ string, h *roomHead) bool { return h.users == 0 && now.Sub(h.used) >= a.idle })
	}
	h, ok := a.rooms[room]
	if !ok {
		h = &roomHead{}
		a.rooms[room] = h
	}
	h.users++
	return h
}

func (a *Appender) release(h *roomHead) {
	a.mu.Lock()
	defer a.mu.Unlock()
	h.users--
	h.used = a.now()
}

// Heads is the number of rooms whose head the appender remembers.
func (a *Appender) Heads() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.rooms)
}

// LastSeq reads the stream sequence of the room's newest event (0 for a room with none).
func (a *Appender) LastSeq(ctx context.Context, room string) (uint64, error) {
	seq, _, err := a.readHead(ctx, room)
	return seq, err
}

// readHead reads the room's newest event: its sequence and chain hash (0 and "" for none).
func (a *Appender) readHead(ctx context.Context, room string) (uint64, string, error) {
	stream, err := a.js.Stream(ctx, StreamEvents)
	if err != nil {
		return 0, "", fmt.Errorf("pipeline: stream %s: %w", StreamEvents, err)
	}
	msg, err := stream.GetLastMsgForSubject(ctx, RoomEventsFilter(room))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return 0, "", nil
	}
	if err != nil {
		return 0, "", fmt.Errorf("pipeline: last event of room %s: %w", room, err)
	}
	return msg.Sequence, events.Hash(msg.Data), nil
}

// Append stores the events of one room in order and returns the sequence of the last. A room's
// first append is preceded by a room.created event. Conflicts with other writers are resolved by
// re-reading the head and retrying: the events are facts already observed, valid after whatever
// another node wrote.
func (a *Appender) Append(ctx context.Context, evs ...events.Envelope) (uint64, error) {
	if len(evs) == 0 {
		return 0, nil
	}
	room := evs[0].Room
	for _, e := range evs[1:] {
		if e.Room != room {
			return 0, fmt.Errorf("pipeline: append: events of rooms %s and %s in one call", room, e.Room)
		}
	}
	ctx, done, err := a.gated(ctx)
	if err != nil {
		return 0, err
	}
	defer done()
	h := a.head(room)
	defer a.release(h)
	h.mu.Lock()
	defer h.mu.Unlock()
	var lastErr error
	for attempt := range appendAttempts {
		if !h.known {
			seq, hash, err := a.readHead(ctx, room)
			if err != nil {
				return 0, err
			}
			h.last, h.hash, h.known = seq, hash, true
		}
		batch := evs
		if h.last == 0 && evs[0].Type != events.TypeRoomCreated {
			created, err := events.New(events.Meta{Room: room, Actor: "system", Node: a.node, Time: evs[0].Time, CausationID: evs[0].ID},
				events.RoomCreated{Node: a.node})
			if err != nil {
				return 0, err
			}
			// The id is derived from the room so that two nodes racing to create it dedupe.
			created.ID = "room-created-" + room
			batch = append([]events.Envelope{created}, evs...)
		}
		seq, err := a.appendExpect(ctx, h, batch)
		if err == nil {
			return seq, nil
		}
		if !errors.Is(err, ErrConflict) {
			// Whether the failed write was stored is unknown: read the head next time.
			h.known = false
			return 0, a.unavailable(err)
		}
		lastErr = err
		h.known = false
		// Events of batch that were stored before the conflict are deduplicated by id on retry.
		// A writer that must re-read the head loses every race against one that already knows
		// it, so back off a random while before retrying, or a busy peer starves it. The
		// window doubles: a replicated stream refuses every write of a room while another is
		// in flight (a raft round trip), so writers there collide far more often than on R1.
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("pipeline: append to room %s: %w", room, ctx.Err())
		case <-time.After(rand.N(time.Millisecond << min(attempt, 6))):
		}
	}
	return 0, lastErr
}

// AppendExpect stores events only if the room's head is still expected; otherwise ErrConflict.
// It is for writers whose decision depends on the state they read at that sequence.
func (a *Appender) AppendExpect(ctx context.Context, expected uint64, evs ...events.Envelope) (uint64, error) {
	if len(evs) == 0 {
		return expected, nil
	}
	ctx, done, err := a.gated(ctx)
	if err != nil {
		return 0, err
	}
	defer done()
	h := a.head(evs[0].Room)
	defer a.release(h)
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.known || h.last != expected {
		// The next event's prevhash is the hash of the event at expected: read the head.
		seq, hash, err := a.readHead(ctx, evs[0].Room)
		if err != nil {
			return 0, err
		}
		h.last, h.hash, h.known = seq, hash, true
		if seq != expected {
			return 0, fmt.Errorf("%w: room %s: head is %d, expected %d", ErrConflict, evs[0].Room, seq, expected)
		}
	}
	seq, err := a.appendExpect(ctx, h, evs)
	if err != nil {
		h.known = false
		if !errors.Is(err, ErrConflict) {
			err = a.unavailable(err)
		}
	}
	return seq, err
}

// gated refuses at once while the gate says the log cannot write, and otherwise returns ctx
// cancelled if the log fails while the append runs (done releases it).
func (a *Appender) gated(ctx context.Context) (context.Context, func(), error) {
	if a.gate == nil {
		return ctx, func() {}, nil
	}
	if err := a.gate.WriteErr(); err != nil {
		return ctx, nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	ctx, cancel := context.WithCancelCause(ctx)
	failed, stop := a.gate.WriteFailed(), make(chan struct{})
	go func() {
		select {
		case <-failed:
			cancel(ErrUnavailable)
		case <-stop:
		}
	}()
	return ctx, func() { close(stop); cancel(nil) }, nil
}

// unavailable marks err as ErrUnavailable when it says the log cannot write: JetStream's
// answers for missing resources or a disabled JetStream, or the gate's verdict.
func (a *Appender) unavailable(err error) error {
	if errors.Is(err, ErrUnavailable) {
		return err
	}
	if a.gate != nil {
		if gerr := a.gate.WriteErr(); gerr != nil {
			return fmt.Errorf("%w: %w (%v)", ErrUnavailable, gerr, err)
		}
	}
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		switch apiErr.ErrorCode {
		case jetstream.ErrorCode(nats.JSErrCodeInsufficientResourcesErr), jetstream.JSErrCodeJetStreamNotEnabled, jetstream.JSErrCodeJetStreamNotEnabledForAccount:
			return fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
	}
	return err
}

func (a *Appender) appendExpect(ctx context.Context, h *roomHead, evs []events.Envelope) (uint64, error) {
	for _, e := range evs {
		e.PrevHash = h.hash
		data, err := events.Encode(e)
		if err != nil {
			return 0, err
		}
		msg := &nats.Msg{Subject: EventSubject(e.Room, events.Kind(e.Type)), Data: data, Header: nats.Header{}}
		ack, err := a.js.PublishMsg(ctx, msg,
			jetstream.WithMsgID(e.ID),
			jetstream.WithExpectStream(StreamEvents),
			jetstream.WithExpectLastSequenceForSubject(h.last, RoomEventsFilter(e.Room)))
		if err != nil {
			if apiErr, ok := wrongLastSequence(err); ok {
				return 0, fmt.Errorf("%w: room %s: %s", ErrConflict, e.Room, apiErr.Description)
			}
			return 0, fmt.Errorf("pipeline: append %s to room %s: %w", e.Type, e.Room, err)
		}
		if ack.Duplicate {
			// Stored before (a retry, perhaps with another prevhash): the head may be past it;
			// re-read it before the next write.
			seq, hash, err := a.readHead(ctx, e.Room)
			if err != nil {
				return 0, err
			}
			h.last, h.hash = seq, hash
			continue
		}
		h.last, h.hash = ack.Sequence, events.Hash(data)
	}
	return h.last, nil
}

// wrongLastSequence reports whether err is JetStream's answer to a stale expected sequence. A
// stream of one replica answers JSErrCodeStreamWrongLastSequence (10071); a replicated stream
// (R > 1) answers JSErrCodeStreamWrongLastSequenceConstant (10164) for the same case.
func wrongLastSequence(err error) (*jetstream.APIError, bool) {
	var apiErr *jetstream.APIError
	if !errors.As(err, &apiErr) {
		return nil, false
	}
	switch apiErr.ErrorCode {
	case jetstream.JSErrCodeStreamWrongLastSequence, jetstream.JSErrCodeStreamWrongLastSequenceConstant:
		return apiErr, true
	}
	return nil, false
}
