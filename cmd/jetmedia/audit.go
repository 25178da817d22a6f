package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetmedia/jetmedia/events"
	"github.com/jetmedia/jetmedia/pipeline/eventlog"
	"github.com/jetmedia/jetmedia/projections"
)

// errBroken makes the command exit with status 1 after it printed the break.
var errBroken = errors.New("hash chain broken")

// chainReport is the --json form of one room's chain.
type chainReport struct {
	Room      string `json:"room"`
	Intact    bool   `json:"intact"`
	Events    int    `json:"events"`
	FirstSeq  uint64 `json:"first_seq"`
	HeadSeq   uint64 `json:"head_seq"`
	Head      string `json:"head"`
	Legacy    int    `json:"legacy,omitempty"`
	Truncated bool   `json:"truncated,omitempty"`
	Break     *struct {
		Seq      uint64 `json:"seq"`
		ID       string `json:"id"`
		PrevSeq  uint64 `json:"prev_seq"`
		Expected string `json:"expected"`
		Found    string `json:"found"`
	} `json:"break,omitempty"`
}

func auditCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "who" {
		return auditWho(ctx, args[1:], stdout, stderr)
	}
	if len(args) > 0 && args[0] == "export" {
		return auditExport(ctx, args[1:], stdout, stderr)
	}
	if len(args) > 0 && args[0] == "anchor" {
		return auditAnchor(ctx, args[1:], stdout, stderr)
	}
	if len(args) == 0 || args[0] != "verify" {
		fmt.Fprintln(stderr, "usage: jetmedia audit verify [--room R] [--json] [--anchor FILE [--anchor-key FILE]] [--nats URL | --data DIR]\n"+
			"       jetmedia audit anchor [--room R] [--out FILE] [--anchor-key FILE] [--nats URL | --data DIR]\n"+
			"       jetmedia audit who --identity I [--from T] [--to T] [--json] [--data DIR | --url URL --token T]\n"+
			"       jetmedia audit export --room R [--format jsonl|csv] [--nats URL | --data DIR]")
		return errUsage
	}
	fs := flag.NewFlagSet("audit verify", flag.ContinueOnError)
	var cf connFlags
	cf.register(fs)
	room := fs.String("room", "", "check this room only (default: every room)")
	asJSON := fs.Bool("json", false, "print JSON: one report per room")
	anchorFile := fs.String("anchor", "", "also check the log against this anchor (from jetmedia audit anchor)")
	keyFile := fs.String("anchor-key", "", "file holding the key the anchor was signed with")
	if err := parse(fs, args[1:], stderr); err != nil {
		return err
	}
	if *room != "" && !events.ValidID(*room) {
		return fmt.Errorf("--room %q: give a valid room id", *room)
	}
	var anchor *projections.Anchor
	if *anchorFile != "" {
		a, err := readAnchor(*anchorFile, *keyFile)
		if err != nil {
			return err
		}
		anchor = &a
	} else if *keyFile != "" {
		return errors.New("--anchor-key needs --anchor")
	}
	c, err := cf.open(ctx)
	if err != nil {
		return err
	}
	defer c.close()
	filter := eventlog.EventsSubjects
	if *room != "" {
		filter = eventlog.RoomEventsFilter(*room)
	}
	head, err := headSeq(ctx, c.js, filter)
	if err != nil {
		return err
	}
	start := time.Now()
	prog := newProgress(stderr, "verify", head)
	chains, err := projections.VerifyChains(ctx, c.js, *room, prog.tick)
	prog.done()
	if err != nil {
		return err
	}
	took := time.Since(start)
	if len(chains) == 0 && anchor == nil {
		if *room != "" {
			return fmt.Errorf("room %q has no events", *room)
		}
		fmt.Fprintln(stdout, "no events")
		return nil
	}
	var mismatches []projections.AnchorMismatch
	if anchor != nil {
		if mismatches, err = projections.CheckAnchor(ctx, c.js, *anchor, *room, chains); err != nil {
			return err
		}
	}
	total, broken := 0, 0
	reports := make([]chainReport, 0, len(chains))
	for _, ch := range chains {
		total += ch.Events
		r := chainReport{Room: ch.Room, Intact: ch.Break == nil, Events: ch.Events, FirstSeq: ch.FirstSeq,
			HeadSeq: ch.HeadSeq, Head: ch.Head, Legacy: ch.Legacy, Truncated: ch.Truncated}
		if b := ch.Break; b != nil {
			broken++
			r.Break = &struct {
				Seq      uint64 `json:"seq"`
				ID       string `json:"id"`
				PrevSeq  uint64 `json:"prev_seq"`
				Expected string `json:"expected"`
				Found    string `json:"found"`
			}{b.Seq, b.ID, b.PrevSeq, b.Want, b.Got}
		}
		reports = append(reports, r)
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		var v any = reports
		if anchor != nil {
			// With an anchor the report is an object: the chains and the anchor's verdict.
			v = struct {
				Rooms      []chainReport                `json:"rooms"`
				AnchorTime time.Time                    `json:"anchor_time"`
				Mismatches []projections.AnchorMismatch `json:"anchor_mismatches"`
			}{reports, anchor.Time, append([]projections.AnchorMismatch{}, mismatches...)}
		}
		if err := enc.Encode(v); err != nil {
			return err
		}
	} else {
		for _, ch := range chains {
			printChain(stdout, ch)
		}
		if len(chains) > 1 {
			if broken == 0 {
				fmt.Fprintf(stdout, "all %d rooms intact: %d events", len(chains), total)
			} else {
				fmt.Fprintf(stdout, "%d of %d rooms BROKEN", broken, len(chains))
			}
			fmt.Fprintf(stdout, " (checked in %s)\n", took.Round(time.Millisecond))
		}
		if anchor != nil {
			for _, m := range mismatches {
				fmt.Fprintln(stdout, m)
			}
			if len(mismatches) == 0 {
				fmt.Fprintf(stdout, "anchor of %s (%d rooms) holds: every anchored head is in the log with its hash\n",
					anchor.Time.Format(time.RFC3339), len(anchor.Rooms))
			}
		}
	}
	if broken > 0 {
		return fmt.Errorf("%w in %d room(s)", errBroken, broken)
	}
	if len(mismatches) > 0 {
		return fmt.Errorf("%w: %d anchored head(s) do not match the log", errAnchorMismatch, len(mismatches))
	}
	return nil
}

// errAnchorMismatch makes verify exit with status 1 when the log disagrees with an anchor.
var errAnchorMismatch = errors.New("anchor mismatch")

// readAnchor reads an anchor file and checks its signature with the key in keyFile ("": none).
func readAnchor(file, keyFile string) (projections.Anchor, error) {
	raw, err := os.ReadFile(file)
	if err != nil {
		return projections.Anchor{}, fmt.Errorf("--anchor: %w", err)
	}
	a, err := projections.ParseAnchor(raw)
	if err != nil {
		return projections.Anchor{}, fmt.Errorf("--anchor %s: %w", file, err)
	}
	key, err := readAnchorKey(keyFile)
	if err != nil {
		return projections.Anchor{}, err
	}
	if err := a.CheckSignature(key); err != nil {
		return projections.Anchor{}, fmt.Errorf("--anchor %s: %w", file, err)
	}
	return a, nil
}

// readAnchorKey reads the key file ("" gives no key); surrounding white space is not part of
// the key, so that `openssl rand -hex 32 > key` works.
func readAnchorKey(file string) ([]byte, error) {
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

// auditAnchor verifies the chains and writes their heads as an anchor.
func auditAnchor(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("audit anchor", flag.ContinueOnError)
	var cf connFlags
	cf.register(fs)
	room := fs.String("room", "", "anchor this room only (default: every room)")
	out := fs.String("out", "", "write the anchor to this file (default: stdout)")
	keyFile := fs.String("anchor-key", "", "sign the anchor with HMAC-SHA256 under the key in this file")
	host, _ := os.Hostname()
	node := fs.String("node", host, "name recorded as the anchor's taker")
	if err := parse(fs, args, stderr); err != nil {
		return err
	}
	if *room != "" && !events.ValidID(*room) {
		return fmt.Errorf("--room %q: give a valid room id", *room)
	}
	key, err := readAnchorKey(*keyFile)
	if err != nil {
		return err
	}
	c, err := cf.open(ctx)
	if err != nil {
		return err
	}
	defer c.close()
	chains, err := projections.VerifyChains(ctx, c.js, *room, nil)
	if err != nil {
		return err
	}
	if len(chains) == 0 && *room != "" {
		return fmt.Errorf("room %q has no events", *room)
	}
	a, err := projections.NewAnchor(chains, *node, time.Now())
	if err != nil {
		return fmt.Errorf("%w: %w", errBroken, err)
	}
	if key != nil {
		if err := a.Sign(key); err != nil {
			return err
		}
	}
	body, err := json.MarshalIndent(a, "", "  ")
	if err != nil {
		return err
	}
	body = append(body, '\n')
	if *out == "" {
		_, err = stdout.Write(body)
		return err
	}
	// Written whole or not at all: a cron job must not leave half an anchor.
	tmp := *out + ".tmp"
	if err := os.WriteFile(tmp, body, 0o644); err != nil {
		return fmt.Errorf("--out: %w", err)
	}
	if err := os.Rename(tmp, *out); err != nil {
		return fmt.Errorf("--out: %w", err)
	}
	fmt.Fprintf(stderr, "anchored %d rooms in %s\n", len(a.Rooms), *out)
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
}

// headSeq is the stream sequence of the newest event matching filter (0 when none).
func headSeq(ctx context.Context, js jetstream.JetStream, filter string) (uint64, error) {
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
