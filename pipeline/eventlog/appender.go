package eventlog

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetmedia/jetmedia/events"
)

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

	mu    sync.Mutex
	rooms map[string]*roomHead
}

type roomHead struct {
	mu   sync.Mutex
	last uint64
	// hash is the chain hash of the event at last (events.Hash), the next event's prevhash.
	hash  string
	known bool
}

// NewAppender returns an appender writing through js on behalf of node.
func NewAppender(js jetstream.JetStream, node string) *Appender {
	return &Appender{js: js, node: node, rooms: make(map[string]*roomHead)}
}

func (a *Appender) head(room string) *roomHead {
	a.mu.Lock()
	defer a.mu.Unlock()
	h, ok := a.rooms[room]
	if !ok {
		h = &roomHead{}
		a.rooms[room] = h
	}
	return h
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
	h := a.head(room)
	h.mu.Lock()
	defer h.mu.Unlock()
	var lastErr error
	for attempt := 0; attempt < 8; attempt++ {
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
			return 0, err
		}
		lastErr = err
		h.known = false
		// Events of batch that were stored before the conflict are deduplicated by id on retry.
		// A writer that must re-read the head loses every race against one that already knows
		// it, so back off a random while before retrying, or a busy peer starves it.
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("pipeline: append to room %s: %w", room, ctx.Err())
		case <-time.After(rand.N(time.Duration(attempt+1) * time.Millisecond)):
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
	h := a.head(evs[0].Room)
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
	}
	return seq, err
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
			var apiErr *jetstream.APIError
			// A replicated (R>1) stream answers a wrong expected sequence with its own code.
			if errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
				apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant) {
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
