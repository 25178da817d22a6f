package projections

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetmedia/jetmedia/events"
	"github.com/jetmedia/jetmedia/pipeline/eventlog"
)

// Anchors.
//
// The hash chain proves that no stored event was changed relative to the events after it, but
// not relative to the outside world: whoever can rewrite the stream can rewrite a tail and
// re-chain it, or append at the head with the right prevhash. An anchor is the head of each
// room's chain (stream sequence, event id, hash, number of events) written down at one instant
// and kept where the stream's writers cannot reach. Later, the log must still hold each
// anchored event at its sequence with its hash: the hash covers every event of the room before
// it, so the whole anchored prefix is fixed, and the chain check covers what came after.

// AnchorVersion is the version of the anchor format this code writes and reads.
const AnchorVersion = 1

// ErrAnchorMAC is wrapped when an anchor's HMAC is missing, not expected or does not match.
var ErrAnchorMAC = errors.New("projections: anchor signature")

// Anchor is the chain heads of some rooms at one instant.
type Anchor struct {
	Version int          `json:"version"`
	Node    string       `json:"node"`
	Time    time.Time    `json:"time"`
	Rooms   []RoomAnchor `json:"rooms"`
	// HMAC is the lowercase hex HMAC-SHA256, under the operator's anchor key, of the anchor's
	// JSON encoding with HMAC empty; "" for an unsigned anchor.
	HMAC string `json:"hmac_sha256,omitempty"`
}

// RoomAnchor is one room's chain head.
type RoomAnchor struct {
	Room   string `json:"room"`
	Seq    uint64 `json:"seq"`
	ID     string `json:"id"`
	Hash   string `json:"hash"`
	Events int    `json:"events"`
	// Unlinked are the room's other events no later event linked to when it was anchored: in a
	// room with two writers (events.Chain, "Two writers") each other writer's newest event.
	// With the head they fix every event before them. Absent for a room with one writer.
	Unlinked []AnchoredEvent `json:"unlinked,omitempty"`
}

// AnchoredEvent is an event anchored beside a room's head: its stream sequence and hash.
type AnchoredEvent struct {
	Seq  uint64 `json:"seq"`
	Hash string `json:"hash"`
}

// NewAnchor anchors the heads of chains (as VerifyChains returns them). A broken chain is an
// error: anchoring it would vouch for a forgery.
func NewAnchor(chains []*events.Chain, node string, now time.Time) (Anchor, error) {
	a := Anchor{Version: AnchorVersion, Node: node, Time: now.UTC(), Rooms: make([]RoomAnchor, 0, len(chains))}
	for _, c := range chains {
		if c.Break != nil {
			return Anchor{}, fmt.Errorf("projections: will not anchor room %s: %w", c.Room, c.Break)
		}
		ra := RoomAnchor{Room: c.Room, Seq: c.HeadSeq, ID: c.HeadID, Hash: c.Head, Events: c.Events}
		for _, seq := range c.Unlinked() {
			h, _ := c.UnlinkedHash(seq)
			ra.Unlinked = append(ra.Unlinked, AnchoredEvent{Seq: seq, Hash: h})
		}
		a.Rooms = append(a.Rooms, ra)
	}
	return a, nil
}

func (a Anchor) mac(key []byte) (string, error) {
	a.HMAC = ""
	body, err := json.Marshal(a)
	if err != nil {
		return "", fmt.Errorf("projections: encode anchor: %w", err)
	}
	m := hmac.New(sha256.New, key)
	m.Write(body)
	return hex.EncodeToString(m.Sum(nil)), nil
}

// Sign sets a's HMAC under key.
func (a *Anchor) Sign(key []byte) error {
	if len(key) == 0 {
		return fmt.Errorf("%w: empty key", ErrAnchorMAC)
	}
	mac, err := a.mac(key)
	if err != nil {
		return err
	}
	a.HMAC = mac
	return nil
}

// CheckSignature checks a's HMAC under key; with no key, a must be unsigned (a signed anchor
// checked without its key would prove nothing the reader expects).
func (a Anchor) CheckSignature(key []byte) error {
	switch {
	case len(key) == 0 && a.HMAC == "":
		return nil
	case len(key) == 0:
		return fmt.Errorf("%w: the anchor is signed; give its key", ErrAnchorMAC)
	case a.HMAC == "":
		return fmt.Errorf("%w: the anchor is not signed, but a key was given", ErrAnchorMAC)
	}
	want, err := a.mac(key)
	if err != nil {
		return err
	}
	if !hmac.Equal([]byte(want), []byte(a.HMAC)) {
		return fmt.Errorf("%w: does not match (the anchor was edited, or the key is not the one it was signed with)", ErrAnchorMAC)
	}
	return nil
}

// ParseAnchor reads an anchor's JSON strictly.
func ParseAnchor(raw []byte) (Anchor, error) {
	var a Anchor
	if err := json.Unmarshal(raw, &a); err != nil {
		return Anchor{}, fmt.Errorf("projections: anchor: %w", err)
	}
	if a.Version != AnchorVersion {
		return Anchor{}, fmt.Errorf("projections: anchor version %d, this jetmedia reads %d", a.Version, AnchorVersion)
	}
	for _, r := range a.Rooms {
		if !events.ValidID(r.Room) || r.Seq == 0 || len(r.Hash) != 64 {
			return Anchor{}, fmt.Errorf("projections: anchor: room entry %+v is not valid", r)
		}
	}
	return a, nil
}

// AnchorMismatch is one anchored room head the log no longer agrees with.
type AnchorMismatch struct {
	Room string `json:"room"`
	Seq  uint64 `json:"seq"`
	// Want is the anchored hash; Got the hash of what the log holds at Seq ("" when nothing).
	Want   string `json:"anchored_hash"`
	Got    string `json:"stored_hash,omitempty"`
	Reason string `json:"reason"`
}

func (m AnchorMismatch) String() string {
	return fmt.Sprintf("room %s: anchor mismatch at seq %d: %s", m.Room, m.Seq, m.Reason)
}

// CheckAnchor compares the anchored heads of a (only room's when room is not "") with the log:
// each anchored event must still be stored at its sequence, in its room, with its hash, and
// the room's chain (chains, from VerifyChains over the same log) must have at least as many
// events. Whether the chain after the anchor is intact is the chains' own Break.
func CheckAnchor(ctx context.Context, js jetstream.JetStream, a Anchor, room string, chains []*events.Chain) ([]AnchorMismatch, error) {
	stream, err := js.Stream(ctx, eventlog.StreamEvents)
	if err != nil {
		return nil, fmt.Errorf("projections: stream %s: %w", eventlog.StreamEvents, err)
	}
	byRoom := map[string]*events.Chain{}
	for _, c := range chains {
		byRoom[c.Room] = c
	}
	var out []AnchorMismatch
	for _, ra := range a.Rooms {
		if room != "" && ra.Room != room {
			continue
		}
		mis := AnchorMismatch{Room: ra.Room, Seq: ra.Seq, Want: ra.Hash}
		msg, err := stream.GetMsg(ctx, ra.Seq)
		switch {
		case errors.Is(err, jetstream.ErrMsgNotFound):
			mis.Reason = fmt.Sprintf("the anchored event %s is no longer stored (removed, or aged out by retention)", ra.ID)
			out = append(out, mis)
			continue
		case err != nil:
			return nil, fmt.Errorf("projections: anchored seq %d of room %s: %w", ra.Seq, ra.Room, err)
		}
		mis.Got = events.Hash(msg.Data)
		c := byRoom[ra.Room]
		switch {
		case roomOfSubject(msg.Subject) != ra.Room:
			mis.Reason = fmt.Sprintf("seq %d now holds an event of %s, not the anchored event %s", ra.Seq, msg.Subject, ra.ID)
		case mis.Got != ra.Hash:
			mis.Reason = fmt.Sprintf("stored hash %s, anchored %s (event %s): the event or one before it in the room was rewritten and re-chained", mis.Got, ra.Hash, ra.ID)
		case c == nil:
			mis.Reason = "the room has no events in the log"
		case c.Break == nil && !c.Truncated && c.Events < ra.Events:
			mis.Reason = fmt.Sprintf("the room has %d events, the anchor counted %d: events before the anchored one were removed", c.Events, ra.Events)
		default:
			m, err := checkUnlinked(ctx, stream, ra)
			if err != nil {
				return nil, err
			}
			out = append(out, m...)
			continue
		}
		out = append(out, mis)
	}
	return out, nil
}

// checkUnlinked checks the events anchored beside a room's head: each must still be stored at
// its sequence, in the room, with its hash.
func checkUnlinked(ctx context.Context, stream jetstream.Stream, ra RoomAnchor) ([]AnchorMismatch, error) {
	var out []AnchorMismatch
	for _, e := range ra.Unlinked {
		mis := AnchorMismatch{Room: ra.Room, Seq: e.Seq, Want: e.Hash}
		msg, err := stream.GetMsg(ctx, e.Seq)
		switch {
		case errors.Is(err, jetstream.ErrMsgNotFound):
			mis.Reason = "the anchored event (a writer's newest beside the head) is no longer stored (removed, or aged out by retention)"
		case err != nil:
			return nil, fmt.Errorf("projections: anchored seq %d of room %s: %w", e.Seq, ra.Room, err)
		case roomOfSubject(msg.Subject) != ra.Room:
			mis.Reason = fmt.Sprintf("seq %d now holds an event of %s, not the room's anchored event", e.Seq, msg.Subject)
		default:
			if mis.Got = events.Hash(msg.Data); mis.Got == e.Hash {
				continue
			}
			mis.Reason = fmt.Sprintf("stored hash %s, anchored %s (a writer's newest event beside the head): it or one before it was rewritten and re-chained", mis.Got, e.Hash)
		}
		out = append(out, mis)
	}
	return out, nil
}
