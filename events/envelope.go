package events

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"time"
)

// SpecVersion is the CloudEvents spec version the envelope's attribute names follow.
const SpecVersion = "1.0"

// Sentinel errors callers test with errors.Is.
var (
	// ErrUnknownType is returned when an envelope carries a type with no registered payload.
	ErrUnknownType = errors.New("events: unknown event type")
	// ErrInvalid is returned when an envelope or payload breaks a rule (empty id, bad room...).
	ErrInvalid = errors.New("events: invalid event")
)

// Envelope is the wire form of every event. Attribute names follow CloudEvents (id, source,
// type, time, subject) so any CloudEvents-aware tool can read the log; room, actor, node and
// causation are jetmedia extensions.
type Envelope struct {
	SpecVersion string `json:"specversion"`
	// ID is unique per event; it is also the JetStream Nats-Msg-Id, so a retried append of the
	// same event is stored once.
	ID string `json:"id"`
	// Type is the versioned event type, for example "peer.joined.v1".
	Type string `json:"type"`
	// Source names the writer: "jetmedia/<node>".
	Source string `json:"source"`
	// Subject is the room the event belongs to (the CloudEvents "subject" attribute).
	Subject string    `json:"subject"`
	Time    time.Time `json:"time"`
	// Room repeats Subject under the name jetmedia's tools use.
	Room string `json:"room"`
	// Actor is who caused the event: a peer id, or "system".
	Actor string `json:"actor"`
	// Node is the server that wrote the event.
	Node string `json:"node"`
	// CausationID is the id of the event or request that caused this one, if any.
	CausationID string `json:"causationid,omitempty"`
	// PrevHash is the hash (see Hash) of the room's previous event, chaining each room's events
	// so that an edit or an insertion is evident. Absent on a room's first event and on events
	// written before the chain existed. The Appender sets it; writers leave it empty.
	PrevHash string `json:"prevhash,omitempty"`
	// Data is the type-specific payload.
	Data json.RawMessage `json:"data"`

	// Seq is the stream sequence the event was stored at. It is not part of the wire form; the
	// reader fills it in.
	Seq uint64 `json:"-"`
}

// Payload is a typed event body. EventType returns the versioned wire type.
type Payload interface {
	EventType() string
}

var idPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// ValidID reports whether s can be a room, peer or track id. Ids become NATS subject tokens and
// KV key parts, so they are limited to letters, digits, '-' and '_' (1 to 64 characters).
func ValidID(s string) bool { return idPattern.MatchString(s) }

// NewID returns a new random event or object id (26 lowercase base32 characters: 130 bits,
// valid as a subject token).
func NewID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(fmt.Sprintf("events: crypto/rand failed: %v", err)) // only on a broken OS
	}
	const alphabet = "0123456789abcdefghjkmnpqrstvwxyz"
	out := make([]byte, 26)
	var acc uint64
	var bits uint
	j := 0
	for _, c := range b {
		acc = acc<<8 | uint64(c)
		bits += 8
		for bits >= 5 {
			bits -= 5
			out[j] = alphabet[(acc>>bits)&31]
			j++
		}
	}
	if bits > 0 {
		out[j] = alphabet[(acc<<(5-bits))&31]
		j++
	}
	return string(out[:j])
}

// Meta is what the writer knows about an event besides its payload.
type Meta struct {
	Room        string
	Actor       string
	Node        string
	CausationID string
	Time        time.Time
}

// New wraps a payload in an envelope with a fresh id. The time is taken from meta (UTC,
// truncated to microseconds so it survives JSON round trips exactly).
func New(meta Meta, p Payload) (Envelope, error) {
	if !ValidID(meta.Room) {
		return Envelope{}, fmt.Errorf("%w: room %q is not a valid id", ErrInvalid, meta.Room)
	}
	if _, ok := registry[p.EventType()]; !ok {
		return Envelope{}, fmt.Errorf("%w: %s", ErrUnknownType, p.EventType())
	}
	data, err := json.Marshal(p)
	if err != nil {
		return Envelope{}, fmt.Errorf("events: encode %s: %w", p.EventType(), err)
	}
	actor := meta.Actor
	if actor == "" {
		actor = "system"
	}
	return Envelope{
		SpecVersion: SpecVersion,
		ID:          NewID(),
		Type:        p.EventType(),
		Source:      "jetmedia/" + meta.Node,
		Subject:     meta.Room,
		Time:        meta.Time.UTC().Truncate(time.Microsecond),
		Room:        meta.Room,
		Actor:       actor,
		Node:        meta.Node,
		CausationID: meta.CausationID,
		Data:        data,
	}, nil
}

// Decode parses the JSON wire form and checks the envelope's required attributes.
func Decode(b []byte) (Envelope, error) {
	var e Envelope
	if err := json.Unmarshal(b, &e); err != nil {
		return Envelope{}, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	switch {
	case e.ID == "":
		return Envelope{}, fmt.Errorf("%w: missing id", ErrInvalid)
	case e.Type == "":
		return Envelope{}, fmt.Errorf("%w: missing type", ErrInvalid)
	case !ValidID(e.Room):
		return Envelope{}, fmt.Errorf("%w: room %q", ErrInvalid, e.Room)
	}
	return e, nil
}

// Payload decodes the envelope's data into its typed payload, upcasting older versions to the
// current one where an upcaster is registered.
func (e Envelope) Payload() (Payload, error) {
	t, ok := registry[e.Type]
	if !ok {
		return nil, fmt.Errorf("%w: %s", ErrUnknownType, e.Type)
	}
	p, err := t.decode(e.Data)
	if err != nil {
		return nil, fmt.Errorf("%w: %s data: %v", ErrInvalid, e.Type, err)
	}
	return p, nil
}

// Kind is the type without its version with dots as underscores ("peer.joined.v1" →
// "peer_joined"): the last token of the event's subject.
func Kind(eventType string) string {
	base := eventType
	for i := len(base) - 1; i >= 0; i-- {
		if base[i] == '.' {
			base = base[:i]
			break
		}
	}
	out := []byte(base)
	for i, c := range out {
		if c == '.' {
			out[i] = '_'
		}
	}
	return string(out)
}
