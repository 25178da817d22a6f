package events

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
)

// The hash chain.
//
// Each room's events form a chain: every event but the room's first carries in "prevhash" the
// hash of the room's previous event. The hash of an event is the SHA-256, in lowercase hex (64
// characters), of the event's wire form exactly as stored: the bytes of the JetStream message
// payload. Those bytes are the canonical form, and jetmedia writes them with Encode: the JSON
// encoding of Envelope with its fields in struct order (specversion, id, type, source, subject,
// time, room, actor, node, causationid if set, prevhash if set, data), no whitespace, Go's
// encoding/json escaping, time in RFC 3339 with nanosecond digits trimmed, and data as its raw
// JSON bytes compacted. No hash of the event itself is part of it (there is no such field), and
// prevhash is, so each hash covers the whole history before it.
//
// Because the hash is over the stored bytes, anyone can check the chain without jetmedia's code:
// sha256 of one message's payload must equal the next one's prevhash. A change to any stored
// event, an event inserted between two others, or one removed from the middle breaks the link
// after it. The chain cannot protect its newest event (a forger who computes the right prevhash
// can append at the head, or rewrite the tail and re-chain it); an anchor of the head hash kept
// elsewhere does (projections.Anchor).

// Two writers. An edge (a leaf with its own JetStream domain) appends a room's events to its
// own log, chained there, and that log is copied into the region's; the region's nodes append
// the same room's other events (a region viewer of an edge publisher) chained to whatever the
// region's log held last, edge events included. In the region's log a room's events then form
// one chain per writer, interleaved: an edge event's prevhash is the hash of the edge's previous
// event of the room, which other events may follow in this log, and the edge's first event of a
// room the region already had carries no prevhash. Chain accepts exactly that, for events its
// caller says were copied from another log (AddFrom's writer: the source stream, which
// JetStream records on each copied message) and only for them: such an event links to the
// room's previous event, or else to its writer's previous event of the room (WriterLinks), or
// starts its writer's chain without prevhash when the writer has none in the room
// (WriterStarts). An event appended to this log must link to the room's previous event, as
// ever, so one written past the appender still breaks the chain. Deleting, altering or
// inserting an event between two linked ones breaks a link; what no later event links to is
// listed (Unlinked): each writer's newest event, which the chain protects no more than it
// protects the head. A room no edge wrote has no writer links and nothing unlinked.

// ErrChainBroken is wrapped by every *ChainBreak.
var ErrChainBroken = errors.New("events: hash chain broken")

// Hash returns the chain hash of an event's stored bytes: lowercase hex SHA-256.
func Hash(raw []byte) string {
	sum := sha256.Sum256(raw)
	var out [2 * sha256.Size]byte
	hex.Encode(out[:], sum[:])
	return string(out[:])
}

// ChainBreak describes the first event of a room whose link to the previous one does not hold.
type ChainBreak struct {
	Room string
	// Seq and ID are the event whose prevhash does not match.
	Seq uint64
	ID  string
	// PrevSeq is the stream sequence of the room's previous event, whose hash is Want.
	PrevSeq uint64
	// Want is the hash of the previous event as stored; Got is the prevhash the event records
	// ("" when it records none).
	Want, Got string
}

func (b *ChainBreak) Error() string {
	got := b.Got
	if got == "" {
		got = "no prevhash"
	}
	return fmt.Sprintf("room %s: chain broken at seq %d (id %s): expected prevhash %s (hash of seq %d), found %s: "+
		"seq %d was altered, or seq %d was forged or written bypassing the appender, or events between them are missing",
		b.Room, b.Seq, b.ID, b.Want, b.PrevSeq, got, b.PrevSeq, b.Seq)
}

// Unwrap makes errors.Is(err, ErrChainBroken) hold.
func (b *ChainBreak) Unwrap() error { return ErrChainBroken }

// Chain checks one room's events, fed in log order. The zero value with Room set is ready.
type Chain struct {
	Room string
	// Events counts the events checked so far.
	Events int
	// Legacy counts events after the room's first that carry no prevhash and were written
	// before any event of the room carried one (logs older than the chain).
	Legacy int
	// Truncated is true when the room's first stored event records a prevhash: earlier events
	// are gone (stream retention), so the chain is checked from there on.
	Truncated bool
	// FirstSeq, HeadSeq and Head are the first and newest events checked and the newest's hash;
	// HeadID is the newest's event id.
	FirstSeq, HeadSeq uint64
	Head, HeadID      string
	// Break is the first broken link; once set, later events are not checked.
	Break *ChainBreak
	// WriterLinks counts the copied events linked to their writer's previous event of the
	// room, not to the room's previous event; WriterStarts the copied events after the room's
	// first that carry no prevhash because their writer had no event in the room (an edge's
	// chain beside the region's: see "Two writers").
	WriterLinks, WriterStarts int

	chained    bool
	headLinked bool                 // a later event links to the head
	writers    map[string]chainLink // each writer's newest event of the room
	unlinked   map[uint64]string    // events (seq -> hash), the head aside, no later event links to
}

type chainLink struct {
	seq  uint64
	hash string
}

// links is the part of an envelope the chain needs; decoding only it keeps verification fast.
type links struct {
	ID       string `json:"id"`
	Room     string `json:"room"`
	PrevHash string `json:"prevhash"`
}

// Add checks the next stored event of the room (its stream sequence and stored bytes),
// appended to this log. It returns the *ChainBreak the first time a link does not hold, and
// nil after that.
func (c *Chain) Add(seq uint64, raw []byte) error { return c.AddFrom(seq, raw, "") }

// AddFrom is Add for an event copied into this log from writer's ("" for none: Add), which
// may link to writer's previous event of the room instead (see "Two writers").
func (c *Chain) AddFrom(seq uint64, raw []byte, writer string) error {
	if c.Break != nil {
		return nil
	}
	var l links
	if err := json.Unmarshal(raw, &l); err != nil {
		return fmt.Errorf("%w: seq %d: %v", ErrInvalid, seq, err)
	}
	if c.Room == "" {
		c.Room = l.Room
	}
	if c.Events == 0 {
		c.FirstSeq = seq
		c.Truncated = l.PrevHash != ""
		c.chained = c.Truncated
	} else {
		own, ownOK := c.writers[writer]
		switch {
		case l.PrevHash == "" && !c.chained:
			c.Legacy++
		case l.PrevHash == c.Head:
			c.chained = true
			c.headLinked = true
		case writer == "":
			c.Break = &ChainBreak{Room: c.Room, Seq: seq, ID: l.ID, PrevSeq: c.HeadSeq, Want: c.Head, Got: l.PrevHash}
			return c.Break
		case l.PrevHash == "" && !ownOK:
			c.WriterStarts++
		case ownOK && l.PrevHash == own.hash:
			c.chained = true
			c.WriterLinks++
			delete(c.unlinked, own.seq)
		default:
			c.Break = &ChainBreak{Room: c.Room, Seq: seq, ID: l.ID, PrevSeq: c.HeadSeq, Want: c.Head, Got: l.PrevHash}
			return c.Break
		}
		if !c.headLinked && c.chained {
			if c.unlinked == nil {
				c.unlinked = map[uint64]string{}
			}
			c.unlinked[c.HeadSeq] = c.Head
		}
	}
	c.Events++
	c.HeadSeq = seq
	c.HeadID = l.ID
	c.Head = Hash(raw)
	c.headLinked = false
	if writer != "" {
		if c.writers == nil {
			c.writers = map[string]chainLink{}
		}
		c.writers[writer] = chainLink{seq, c.Head}
	}
	return nil
}

// Unlinked returns, in log order, the events other than the head that no later event links
// to: with two writers, each one's newest event (see "Two writers"); with one, none.
func (c *Chain) Unlinked() []uint64 {
	out := make([]uint64, 0, len(c.unlinked))
	for seq := range c.unlinked {
		out = append(out, seq)
	}
	slices.Sort(out)
	return out
}

// UnlinkedHash returns the hash of an event Unlinked lists.
func (c *Chain) UnlinkedHash(seq uint64) (string, bool) {
	h, ok := c.unlinked[seq]
	return h, ok
}
