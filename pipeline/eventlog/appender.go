package eventlog

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"strconv"
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
	// nc is js's connection, which the appender publishes on; timeout bounds a publish whose
	// context has no deadline (js's default timeout, as jetstream.PublishMsg does).
	nc      *nats.Conn
	timeout time.Duration
	// node names the writer in room.created events the appender adds; scope, when set, is
	// the log's own name in a system of several (an edge's JetStream domain), part of their id.
	node, scope string

	gate Gate // nil: none
	// replies are the reply inboxes publishes are answered on.
	replies *replies
	// idle and now decide when a room's head is forgotten (see WithHeadIdle).
	idle time.Duration
	now  func() time.Time

	mu sync.Mutex
	// rooms holds the head of each room written recently; swept once per idle period.
	rooms     map[string]*roomHead
	lastSweep time.Time
	// sweeper forgets the idle heads once no append came for an idle period, so that an idle
	// node does not keep them (and the heap spans they pin) until its next append; nil when
	// no head is left or after Close.
	sweeper *time.Timer
	closed  bool
}

type roomHead struct {
	mu sync.Mutex
	// filter is the room's RoomEventsFilter; subjects caches EventSubject by event type.
	filter   string
	subjects map[string]string
	last     uint64
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

// WithScope names the log the appender writes as one of several whose events meet in one
// log: an edge's, whose log the region's sources. It goes into the id of the room.created
// events the appender adds (RoomCreatedID).
func WithScope(scope string) AppenderOption {
	return func(a *Appender) { a.scope = scope }
}

// RoomCreatedID is the id of the room.created event an appender adds before a room's first
// event. It is derived from the room, so that two nodes racing to create it in one log
// dedupe, and from the log's scope (WithScope; "" for the region's): an edge that joins a
// room the region created writes a room.created of its own into its own log, and were its id
// the region's, the region's log would drop the copy as a duplicate while the edge's next
// event, copied after it, links to it, a link the region's log could not verify.
func RoomCreatedID(room, scope string) string {
	if scope == "" {
		return "room-created-" + room
	}
	return "room-created-" + room + "@" + scope
}

// NewAppender returns an appender writing through js on behalf of node.
func NewAppender(js jetstream.JetStream, node string, opts ...AppenderOption) *Appender {
	a := &Appender{js: js, nc: js.Conn(), timeout: js.Options().DefaultTimeout, node: node,
		rooms: make(map[string]*roomHead), idle: DefaultHeadIdle, now: time.Now}
	a.replies = newReplies(a.nc)
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
		a.sweepLocked(now)
	}
	h, ok := a.rooms[room]
	if !ok {
		h = &roomHead{filter: RoomEventsFilter(room)}
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
	if a.sweeper == nil && !a.closed {
		a.sweeper = time.AfterFunc(a.idle, a.sweepIdle)
	}
}

// sweepIdle is the sweeper's round: it forgets the idle heads, then comes back while some
// are left.
func (a *Appender) sweepIdle() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.sweeper = nil
	if a.closed {
		return
	}
	a.sweepLocked(a.now())
	if len(a.rooms) > 0 {
		a.sweeper = time.AfterFunc(a.idle, a.sweepIdle)
	}
}

// sweepLocked forgets the heads nothing was appended to for the idle period.
func (a *Appender) sweepLocked(now time.Time) {
	a.lastSweep = now
	maps.DeleteFunc(a.rooms, func(_ string, h *roomHead) bool { return h.users == 0 && now.Sub(h.used) >= a.idle })
	if len(a.rooms) == 0 {
		// A map never shrinks: drop the table a burst of rooms grew.
		a.rooms = make(map[string]*roomHead)
	}
}

// Close releases the appender's reply subscriptions (those in use as their appends end) and
// stops its idle sweep. The appender stays usable: later appends subscribe and unsubscribe a
// reply inbox each, and forget idle heads on the next append after an idle period. An
// appender that is not closed holds its idle inboxes (up to 256 subscriptions, no goroutines)
// until its connection closes.
func (a *Appender) Close() {
	a.mu.Lock()
	a.closed = true
	if a.sweeper != nil {
		a.sweeper.Stop()
		a.sweeper = nil
	}
	a.mu.Unlock()
	a.replies.close()
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
	failed, err := a.gateOpen()
	if err != nil {
		return 0, err
	}
	h := a.head(room)
	defer a.release(h)
	h.mu.Lock()
	defer h.mu.Unlock()
	var lastErr error
	for attempt := range appendAttempts {
		if !h.known {
			seq, hash, err := a.readHeadGated(ctx, room)
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
			created.ID = RoomCreatedID(room, a.scope)
			batch = append([]events.Envelope{created}, evs...)
		}
		seq, err := a.appendExpect(ctx, h, batch, failed)
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
		backoff := time.NewTimer(rand.N(time.Millisecond << min(attempt, 6)))
		select {
		case <-ctx.Done():
			backoff.Stop()
			return 0, fmt.Errorf("pipeline: append to room %s: %w", room, ctx.Err())
		case <-failed:
			backoff.Stop()
			return 0, a.unavailable(fmt.Errorf("pipeline: append to room %s: %w", room, errLogFailed))
		case <-backoff.C:
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
	failed, err := a.gateOpen()
	if err != nil {
		return 0, err
	}
	h := a.head(evs[0].Room)
	defer a.release(h)
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.known || h.last != expected {
		// The next event's prevhash is the hash of the event at expected: read the head.
		seq, hash, err := a.readHeadGated(ctx, evs[0].Room)
		if err != nil {
			return 0, err
		}
		h.last, h.hash, h.known = seq, hash, true
		if seq != expected {
			return 0, fmt.Errorf("%w: room %s: head is %d, expected %d", ErrConflict, evs[0].Room, seq, expected)
		}
	}
	seq, err := a.appendExpect(ctx, h, evs, failed)
	if err != nil {
		h.known = false
		if !errors.Is(err, ErrConflict) {
			err = a.unavailable(err)
		}
	}
	return seq, err
}

// gateOpen refuses at once while the gate says the log cannot write, and otherwise returns the
// channel closed when the log fails (nil without a gate), which ends an append's waits.
func (a *Appender) gateOpen() (<-chan struct{}, error) {
	if a.gate == nil {
		return nil, nil
	}
	if err := a.gate.WriteErr(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return a.gate.WriteFailed(), nil
}

// readHeadGated is readHead cancelled if the log fails meanwhile (see Gate).
func (a *Appender) readHeadGated(ctx context.Context, room string) (uint64, string, error) {
	ctx, done, err := a.gated(ctx)
	if err != nil {
		return 0, "", err
	}
	defer done()
	return a.readHead(ctx, room)
}

// gated refuses at once while the gate says the log cannot write, and otherwise returns ctx
// cancelled if the log fails while it is in use (done releases it).
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
	if errors.Is(err, errLogFailed) { // and recovered since
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
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

// appendExpect publishes evs one after the other, each chained on and checked against the
// head before it. The hot path of every append: docs/benchmarks.md ("Append throughput,
// second pass") says what each step costs.
func (a *Appender) appendExpect(ctx context.Context, h *roomHead, evs []events.Envelope, failed <-chan struct{}) (uint64, error) {
	if len(evs) == 0 {
		return h.last, nil
	}
	in, err := a.replies.take()
	if err != nil {
		return 0, fmt.Errorf("pipeline: append %s to room %s: %w", evs[0].Type, evs[0].Room, err)
	}
	defer a.replies.give(in)
	return a.publishEach(ctx, h, evs, in, failed)
}

func (a *Appender) publishEach(ctx context.Context, h *roomHead, evs []events.Envelope, in *replyInbox, failed <-chan struct{}) (uint64, error) {
	var seqBuf [20]byte
	for _, e := range evs {
		e.PrevHash = h.hash
		data, err := events.AppendEncode(in.buf[:0], e)
		if err != nil {
			return 0, err
		}
		in.buf = data
		in.msg.Subject, in.msg.Data = h.subject(e.Room, e.Type), data
		hdr := in.msg.Header
		hdr[jetstream.MsgIDHeader][0] = e.ID
		hdr[jetstream.ExpectedLastSubjSeqHeader][0] = string(strconv.AppendUint(seqBuf[:0], h.last, 10))
		hdr[jetstream.ExpectedLastSubjSeqSubjHeader][0] = h.filter
		ack, err := a.publish(ctx, in, failed)
		if err != nil {
			if apiErr, ok := wrongLastSequence(err); ok {
				return 0, fmt.Errorf("%w: room %s: %s", ErrConflict, e.Room, apiErr.Description)
			}
			return 0, fmt.Errorf("pipeline: append %s to room %s: %w", e.Type, e.Room, err)
		}
		if ack.duplicate {
			// Stored before (a retry, perhaps with another prevhash): the head may be past it;
			// re-read it before the next write.
			seq, hash, err := a.readHead(ctx, e.Room)
			if err != nil {
				return 0, err
			}
			h.last, h.hash = seq, hash
			continue
		}
		h.last, h.hash = ack.seq, events.Hash(data)
	}
	return h.last, nil
}

// subject is EventSubject for an event of the room, remembered per type.
func (h *roomHead) subject(room, eventType string) string {
	if s, ok := h.subjects[eventType]; ok {
		return s
	}
	if h.subjects == nil {
		h.subjects = make(map[string]string)
	}
	s := EventSubject(room, events.Kind(eventType))
	if len(h.subjects) < maxCachedSubjects {
		h.subjects[eventType] = s
	}
	return s
}

// maxCachedSubjects bounds a head's subject cache (event types are a few dozen).
const maxCachedSubjects = 64

// pubAck is what the appender needs of JetStream's answer to a publish.
type pubAck struct {
	seq       uint64
	duplicate bool
}

// publish sends in.msg on the appender's connection and reads the stream's answer. It is
// jetstream.PublishMsg without the per-call option processing, answered on a reusable inbox
// and with a cheaper read of the common answer (the append hot path, measured in
// docs/benchmarks.md): the headers are set by the caller, and a JetStream error comes back
// as a *jetstream.APIError as PublishMsg returns it. A publish whose context has no deadline
// is bounded by the JetStream context's default timeout, as with PublishMsg.
func (a *Appender) publish(ctx context.Context, in *replyInbox, failed <-chan struct{}) (pubAck, error) {
	resp, err := a.replies.request(ctx, in, a.timeout, failed)
	if err != nil {
		return pubAck{}, fmt.Errorf("publish: %w", err)
	}
	return parsePubAck(resp.Data)
}

// ackPrefix starts the answer to a message stored in the EVENTS stream.
const ackPrefix = `{"stream":"` + StreamEvents + `",`

// parsePubAck reads a publish's answer. The common one, {"stream":"EVENTS","seq":N} or with
// the JetStream domain, {"stream":"EVENTS","domain":"D","seq":N} (the server writes both from
// a template), is read without encoding/json; anything else (a duplicate, an error) goes
// through encoding/json.
func parsePubAck(data []byte) (pubAck, error) {
	if seq, ok := fastPubAck(data); ok {
		return pubAck{seq: seq}, nil
	}
	var r struct {
		Stream    string              `json:"stream"`
		Seq       uint64              `json:"seq"`
		Duplicate bool                `json:"duplicate"`
		Error     *jetstream.APIError `json:"error"`
	}
	if err := json.Unmarshal(data, &r); err != nil {
		return pubAck{}, jetstream.ErrInvalidJSAck
	}
	if r.Error != nil {
		return pubAck{}, fmt.Errorf("nats: %w", r.Error)
	}
	if r.Stream == "" {
		return pubAck{}, jetstream.ErrInvalidJSAck
	}
	return pubAck{seq: r.Seq, duplicate: r.Duplicate}, nil
}

// fastPubAck reads the server's template answer for a stored message, or reports false.
func fastPubAck(data []byte) (uint64, bool) {
	rest, ok := bytes.CutPrefix(data, []byte(ackPrefix))
	if !ok {
		return 0, false
	}
	if domain, ok := bytes.CutPrefix(rest, []byte(`"domain":"`)); ok {
		end := bytes.IndexByte(domain, '"')
		if end < 0 || bytes.ContainsFunc(domain[:end], func(r rune) bool { return r == '\\' || r < ' ' }) {
			return 0, false // an escape or a control character: let encoding/json judge it
		}
		if rest, ok = bytes.CutPrefix(domain[end+1:], []byte(",")); !ok {
			return 0, false
		}
	}
	digits, ok := bytes.CutPrefix(rest, []byte(`"seq":`))
	if !ok {
		return 0, false
	}
	digits, ok = bytes.CutSuffix(digits, []byte("}"))
	if !ok || len(digits) == 0 || digits[0] < '1' || digits[0] > '9' {
		return 0, false
	}
	seq, err := strconv.ParseUint(string(digits), 10, 64)
	return seq, err == nil
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
