package logtools

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetmedia/jetmedia/events"
	"github.com/jetmedia/jetmedia/pipeline/eventlog"
	"github.com/jetmedia/jetmedia/projections"
)

// ErrBroken makes the command exit with status 1 after it printed the break.
var ErrBroken = errors.New("hash chain broken")

// ErrAnchorMismatch makes verify exit with status 1 when the log disagrees with an anchor.
var ErrAnchorMismatch = errors.New("anchor mismatch")

// ChainReport is the --json form of one room's chain.
type ChainReport struct {
	Room      string `json:"room"`
	Intact    bool   `json:"intact"`
	Events    int    `json:"events"`
	FirstSeq  uint64 `json:"first_seq"`
	HeadSeq   uint64 `json:"head_seq"`
	Head      string `json:"head"`
	Legacy    int    `json:"legacy,omitempty"`
	Truncated bool   `json:"truncated,omitempty"`
	// WriterLinks, WriterStarts and Unlinked tell a room with two writers' chains interleaved
	// (an edge's and the region's: events.Chain, "Two writers"); all zero for one writer.
	WriterLinks  int         `json:"writer_links,omitempty"`
	WriterStarts int         `json:"writer_starts,omitempty"`
	Unlinked     []uint64    `json:"unlinked,omitempty"`
	Break        *ChainBreak `json:"break,omitempty"`
}

// ChainBreak is where a room's chain breaks, in a ChainReport.
type ChainBreak struct {
	Seq      uint64 `json:"seq"`
	ID       string `json:"id"`
	PrevSeq  uint64 `json:"prev_seq"`
	Expected string `json:"expected"`
	Found    string `json:"found"`
}

// VerifyOptions are what `jetmedia audit verify` was asked.
type VerifyOptions struct {
	Room   string              // one room ("": every room)
	JSON   bool                // print JSON instead of text
	Anchor *projections.Anchor // also check the log against this anchor
}

// Verify checks each room's hash chain (and the anchor, if any) and prints the verdict. It
// returns ErrBroken or ErrAnchorMismatch (wrapped) when the log fails a check.
func Verify(ctx context.Context, js jetstream.JetStream, o VerifyOptions, stdout, stderr io.Writer) error {
	filter := eventlog.EventsSubjects
	if o.Room != "" {
		filter = eventlog.RoomEventsFilter(o.Room)
	}
	head, err := HeadSeq(ctx, js, filter)
	if err != nil {
		return err
	}
	start := time.Now()
	prog := NewProgress(stderr, "verify", head)
	chains, err := projections.VerifyChains(ctx, js, o.Room, prog.Tick)
	prog.Done()
	if err != nil {
		return err
	}
	took := time.Since(start)
	if len(chains) == 0 && o.Anchor == nil {
		if o.Room != "" {
			return fmt.Errorf("room %q has no events", o.Room)
		}
		fmt.Fprintln(stdout, "no events")
		return nil
	}
	var mismatches []projections.AnchorMismatch
	if o.Anchor != nil {
		if mismatches, err = projections.CheckAnchor(ctx, js, *o.Anchor, o.Room, chains); err != nil {
			return err
		}
	}
	reports, broken := chainReports(chains)
	if o.JSON {
		err = printVerifyJSON(stdout, reports, o.Anchor, mismatches)
	} else {
		printVerify(stdout, chains, broken, took, o.Anchor, mismatches)
	}
	if err != nil {
		return err
	}
	if broken > 0 {
		return fmt.Errorf("%w in %d room(s)", ErrBroken, broken)
	}
	if len(mismatches) > 0 {
		return fmt.Errorf("%w: %d anchored event(s) do not match the log", ErrAnchorMismatch, len(mismatches))
	}
	return nil
}

func chainReports(chains []*events.Chain) (reports []ChainReport, broken int) {
	reports = make([]ChainReport, 0, len(chains))
	for _, ch := range chains {
		r := ChainReport{Room: ch.Room, Intact: ch.Break == nil, Events: ch.Events, FirstSeq: ch.FirstSeq,
			HeadSeq: ch.HeadSeq, Head: ch.Head, Legacy: ch.Legacy, Truncated: ch.Truncated,
			WriterLinks: ch.WriterLinks, WriterStarts: ch.WriterStarts, Unlinked: ch.Unlinked()}
		if b := ch.Break; b != nil {
			broken++
			r.Break = &ChainBreak{b.Seq, b.ID, b.PrevSeq, b.Want, b.Got}
		}
		reports = append(reports, r)
	}
	return reports, broken
}

func printVerifyJSON(w io.Writer, reports []ChainReport, anchor *projections.Anchor, mismatches []projections.AnchorMismatch) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	var v any = reports
	if anchor != nil {
		// With an anchor the report is an object: the chains and the anchor's verdict.
		v = struct {
			Rooms      []ChainReport                `json:"rooms"`
			AnchorTime time.Time                    `json:"anchor_time"`
			Mismatches []projections.AnchorMismatch `json:"anchor_mismatches"`
		}{reports, anchor.Time, append([]projections.AnchorMismatch{}, mismatches...)}
	}
	return enc.Encode(v)
}

func printVerify(w io.Writer, chains []*events.Chain, broken int, took time.Duration, anchor *projections.Anchor, mismatches []projections.AnchorMismatch) {
	total := 0
	for _, ch := range chains {
		total += ch.Events
		printChain(w, ch)
	}
	if len(chains) > 1 {
		if broken == 0 {
			fmt.Fprintf(w, "all %d rooms intact: %d events", len(chains), total)
		} else {
			fmt.Fprintf(w, "%d of %d rooms BROKEN", broken, len(chains))
		}
		fmt.Fprintf(w, " (checked in %s)\n", took.Round(time.Millisecond))
	}
	if anchor == nil {
		return
	}
	for _, m := range mismatches {
		fmt.Fprintln(w, m)
	}
	if len(mismatches) == 0 {
		fmt.Fprintf(w, "anchor of %s (%d rooms) holds: every anchored event is in the log with its hash\n",
			anchor.Time.Format(time.RFC3339), len(anchor.Rooms))
	}
}

// ReadAnchor reads an anchor file and checks its signature with the key in keyFile ("": none).
func ReadAnchor(file, keyFile string) (projections.Anchor, error) {
	raw, err := os.ReadFile(file)
	if err != nil {
		return projections.Anchor{}, fmt.Errorf("--anchor: %w", err)
	}
	a, err := projections.ParseAnchor(raw)
	if err != nil {
		return projections.Anchor{}, fmt.Errorf("--anchor %s: %w", file, err)
	}
	key, err := ReadAnchorKey(keyFile)
	if err != nil {
		return projections.Anchor{}, err
	}
	if err := a.CheckSignature(key); err != nil {
		return projections.Anchor{}, fmt.Errorf("--anchor %s: %w", file, err)
	}
	return a, nil
}

// ReadAnchorKey reads the key file ("" gives no key); surrounding white space is not part of
// the key, so that `openssl rand -hex 32 > key` works.
func ReadAnchorKey(file string) ([]byte, error) {
	if file == "" {
		return nil, nil
	}
	raw, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("--anchor-key: %w", err)
	}
	key := bytes.TrimSpace(raw)
	if len(key) < 16 {
		return nil, fmt.Errorf("--anchor-key %s: %d bytes; use at least 16 (e.g. openssl rand -hex 32)", file, len(key))
	}
	return key, nil
}

// AnchorOptions are what `jetmedia audit anchor` was asked.
type AnchorOptions struct {
	Room string // one room ("": every room)
	Out  string // the file to write ("": stdout)
	Key  []byte // sign with HMAC-SHA256 under this key (nil: unsigned)
	Node string // the anchor's taker
}

// WriteAnchor verifies the chains and writes their heads as an anchor.
func WriteAnchor(ctx context.Context, js jetstream.JetStream, o AnchorOptions, stdout, stderr io.Writer) error {
	chains, err := projections.VerifyChains(ctx, js, o.Room, nil)
	if err != nil {
		return err
	}
	if len(chains) == 0 && o.Room != "" {
		return fmt.Errorf("room %q has no events", o.Room)
	}
	a, err := projections.NewAnchor(chains, o.Node, time.Now())
	if err != nil {
		return fmt.Errorf("%w: %w", ErrBroken, err)
	}
	if o.Key != nil {
		if err := a.Sign(o.Key); err != nil {
			return err
		}
	}
	body, err := json.MarshalIndent(a, "", "  ")
	if err != nil {
		return err
	}
	body = append(body, '\n')
	if o.Out == "" {
		_, err = stdout.Write(body)
		return err
	}
	// Written whole or not at all: a cron job must not leave half an anchor.
	tmp := o.Out + ".tmp"
	if err := os.WriteFile(tmp, body, 0o644); err != nil {
		return fmt.Errorf("--out: %w", err)
	}
	if err := os.Rename(tmp, o.Out); err != nil {
		return fmt.Errorf("--out: %w", err)
	}
	fmt.Fprintf(stderr, "anchored %d rooms in %s\n", len(a.Rooms), o.Out)
	return nil
}
func printChain(w io.Writer, ch *events.Chain) {
	if ch.Break != nil {
		b := ch.Break
		found := b.Got
		if found == "" {
			found = "none"
		}
		fmt.Fprintf(w, "room %s: BROKEN at seq %d (id %s): expected prevhash %s (hash of seq %d), found %s\n",
			ch.Room, b.Seq, b.ID, b.Want, b.PrevSeq, found)
		fmt.Fprintf(w, "  the %d events before it are intact; seq %d was altered, or seq %d was written bypassing the appender, or events between them are missing\n",
			ch.Events, b.PrevSeq, b.Seq)
		return
	}
	fmt.Fprintf(w, "room %s: intact: %d events (seq %d..%d), head %s\n", ch.Room, ch.Events, ch.FirstSeq, ch.HeadSeq, ch.Head)
	if ch.Legacy > 0 {
		fmt.Fprintf(w, "  %d events after the first were written before the hash chain existed (no prevhash); the chain covers the rest\n", ch.Legacy)
	}
	if ch.Truncated {
		fmt.Fprintf(w, "  the room's earlier events are gone (stream retention); checked from seq %d on\n", ch.FirstSeq)
	}
	if ch.WriterLinks+ch.WriterStarts > 0 {
		fmt.Fprintf(w, "  two writers (an edge's log copied in beside the region's): %d copied events link to their writer's previous event, %d start a writer's chain;"+
			" no later event links to seq %v, which the chain protects no more than the head (expected only in rooms an edge served)\n",
			ch.WriterLinks, ch.WriterStarts, ch.Unlinked())
	}
}

// HeadSeq is the stream sequence of the newest event matching filter (0 when none).
func HeadSeq(ctx context.Context, js jetstream.JetStream, filter string) (uint64, error) {
	stream, err := js.Stream(ctx, eventlog.StreamEvents)
	if err != nil {
		return 0, fmt.Errorf("stream %s: %w", eventlog.StreamEvents, err)
	}
	msg, err := stream.GetLastMsgForSubject(ctx, filter)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("head of %s: %w", filter, err)
	}
	return msg.Sequence, nil
}
