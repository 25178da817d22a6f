package logtools

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetmedia/jetmedia/events"
	"github.com/jetmedia/jetmedia/pipeline/eventlog"
	"github.com/jetmedia/jetmedia/projections"
	"github.com/jetmedia/jetmedia/projections/roomsapi"
)

// TailOptions are what `jetmedia tail` was asked.
type TailOptions struct {
	Room      string // only this room's events ("": every room)
	FromStart bool   // print the stored history first
	NoFollow  bool   // exit after the stored history
}

// Tail prints the event log as JSON lines.
func Tail(ctx context.Context, js jetstream.JetStream, o TailOptions, stdout io.Writer) error {
	filter := eventlog.EventsSubjects
	if o.Room != "" {
		filter = eventlog.RoomEventsFilter(o.Room)
	}
	enc := json.NewEncoder(stdout)
	print := func(e events.Envelope) error { return enc.Encode(e) }
	opts := eventlog.ReadOptions{Filter: filter}
	if o.NoFollow {
		return eventlog.Read(ctx, js, opts, print)
	}
	if o.FromStart {
		opts.FromSeq = 1
	}
	return eventlog.Follow(ctx, js, opts, print)
}

// Rooms prints the rooms of the rooms projection (all: those nobody is in too).
func Rooms(ctx context.Context, js jetstream.JetStream, all, asJSON bool, stdout io.Writer) error {
	kv, err := js.KeyValue(ctx, eventlog.BucketRooms)
	if err != nil {
		return fmt.Errorf("bucket %s: %w", eventlog.BucketRooms, err)
	}
	list, err := projections.Rooms(ctx, kv)
	if err != nil {
		return err
	}
	views := []roomsapi.RoomView{}
	for _, r := range list {
		if all || len(r.Peers) > 0 {
			views = append(views, roomsapi.ViewOf(r))
		}
	}
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(views)
	}
	if len(views) == 0 {
		fmt.Fprintln(stdout, "no live rooms")
		return nil
	}
	for _, v := range views {
		printState(stdout, v)
	}
	return nil
}

func printState(w io.Writer, v roomsapi.RoomView) {
	fmt.Fprintf(w, "room %s: %d peers, %d tracks, %d subscriptions (last event #%d at %s)\n",
		v.Room.Room, len(v.Peers), len(v.Tracks), len(v.Subs), v.LastSeq, v.LastEvent.Format(time.RFC3339))
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	for _, p := range v.Peers {
		fmt.Fprintf(tw, "  peer\t%s\t%s %s\ton %s\tsince %s\n", p.Peer, p.Transport, p.Role, p.Node, p.JoinedAt.Format(time.RFC3339))
		for _, t := range v.Tracks {
			if t.Peer == p.Peer {
				fmt.Fprintf(tw, "    track\t%s\t%s %s\t\tsince %s\n", t.Track, t.Kind, t.Codec, t.PublishedAt.Format(time.RFC3339))
			}
		}
	}
	for _, s := range v.Subs {
		fmt.Fprintf(tw, "  sub\t%s\t<- %s\tof %s\tsince %s\n", s.Peer, s.Track, s.Publisher, s.Since.Format(time.RFC3339))
	}
	_ = tw.Flush()
}

// ReplayOptions are what `jetmedia replay` was asked.
type ReplayOptions struct {
	Room string
	At   time.Time // replay up to this instant (zero: now)
	JSON bool      // print {at, events, state} as JSON
	// Full prints the timeline from the room's first event, without starting from a snapshot.
	Full bool
}

// Replay prints a room's timeline up to o.At and the state folded from it.
func Replay(ctx context.Context, js jetstream.JetStream, o ReplayOptions, stdout, stderr io.Writer) error {
	head, err := HeadSeq(ctx, js, eventlog.RoomEventsFilter(o.Room))
	if err != nil {
		return err
	}
	if head == 0 {
		return fmt.Errorf("room %q has no events", o.Room)
	}
	var snaps *projections.SnapshotStore
	if !o.Full {
		if snaps, err = projections.OpenSnapshotStore(ctx, js, slog.New(slog.NewTextHandler(stderr, nil))); err != nil {
			fmt.Fprintf(stderr, "replay: %v: folding the whole log\n", err)
			snaps = nil
		}
	}
	prog := NewProgress(stderr, "replay", head)
	var log []events.Envelope
	out := bufio.NewWriter(stdout)
	state, from, err := projections.StateAtFrom(ctx, js, snaps, o.Room, o.At, func(e events.Envelope) error {
		prog.Tick(e.Seq)
		if o.JSON {
			log = append(log, e)
			return nil
		}
		_, err := fmt.Fprintln(out, timelineLine(e))
		return err
	})
	prog.Done()
	if err != nil {
		return err
	}
	if !state.Exists() {
		return fmt.Errorf("room %q has no events at or before %s", o.Room, o.At.Format(time.RFC3339Nano))
	}
	if o.JSON {
		if err := printReplayJSON(out, o.At, from, log, state); err != nil {
			return err
		}
		return out.Flush()
	}
	if from > 0 {
		fmt.Fprintf(out, "\n(the timeline starts after the snapshot at #%d, which holds the events before it; --full prints them all)\n", from)
	}
	if o.At.IsZero() {
		fmt.Fprintln(out, "\nstate after the last event:")
	} else {
		fmt.Fprintf(out, "\nstate at %s:\n", o.At.Format(time.RFC3339Nano))
	}
	printState(out, roomsapi.ViewOf(state))
	return out.Flush()
}

func printReplayJSON(w io.Writer, at time.Time, from uint64, log []events.Envelope, state projections.Room) error {
	if log == nil {
		log = []events.Envelope{}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	var atOut *time.Time
	if !at.IsZero() {
		atOut = &at
	}
	return enc.Encode(struct {
		At *time.Time `json:"at,omitempty"`
		// FromSnapshot is the sequence of the snapshot the fold started from: events holds
		// only the events after it.
		FromSnapshot uint64            `json:"from_snapshot,omitempty"`
		Events       []events.Envelope `json:"events"`
		State        roomsapi.RoomView `json:"state"`
	}{atOut, from, log, roomsapi.ViewOf(state)})
}

// timelineLine is one human-readable line of a timeline: time, sequence, type, actor and the
// payload's fields.
func timelineLine(e events.Envelope) string {
	var fields map[string]any
	_ = json.Unmarshal(e.Data, &fields)
	parts := make([]string, 0, len(fields))
	for _, k := range slices.Sorted(maps.Keys(fields)) {
		parts = append(parts, fmt.Sprintf("%s=%v", k, fields[k]))
	}
	return fmt.Sprintf("%s  #%-6d %-24s actor=%s node=%s  %s",
		e.Time.Format("2006-01-02T15:04:05.000Z07:00"), e.Seq, e.Type, e.Actor, e.Node, strings.Join(parts, " "))
}

// Rebuild folds the whole log into a fresh bucket (fromSnapshots: each room's newest valid
// snapshot and the events after it) and compares it with the live rooms projection.
func Rebuild(ctx context.Context, js jetstream.JetStream, bucket string, fromSnapshots bool, stdout, stderr io.Writer) error {
	start := time.Now()
	var n int
	var err error
	how := ""
	if fromSnapshots {
		store, serr := projections.OpenSnapshotStore(ctx, js, slog.New(slog.NewTextHandler(stderr, nil)))
		if serr != nil {
			return fmt.Errorf("rebuild from snapshots: %w", serr)
		}
		n, err = projections.RebuildFromSnapshots(ctx, js, bucket, eventlog.StorageConfig{}, store)
		how = " after the rooms' snapshots"
	} else {
		n, err = projections.Rebuild(ctx, js, bucket, eventlog.StorageConfig{})
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "folded %d events%s into bucket %s in %s\n", n, how, bucket, time.Since(start).Round(time.Millisecond))
	live, err := js.KeyValue(ctx, eventlog.BucketRooms)
	if err != nil {
		return fmt.Errorf("bucket %s: %w", eventlog.BucketRooms, err)
	}
	rebuilt, err := js.KeyValue(ctx, bucket)
	if err != nil {
		return err
	}
	a, err := projections.Snapshot(ctx, live)
	if err != nil {
		return err
	}
	b, err := projections.Snapshot(ctx, rebuilt)
	if err != nil {
		return err
	}
	var diff []string
	for _, k := range slices.Sorted(maps.Keys(a)) {
		if string(a[k]) != string(b[k]) {
			diff = append(diff, k)
		}
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			diff = append(diff, k)
		}
	}
	if len(diff) > 0 {
		return fmt.Errorf("rebuilt bucket differs from the live one in %d keys (the live projection may be behind): %s",
			len(diff), strings.Join(diff[:min(len(diff), 10)], ", "))
	}
	fmt.Fprintf(stdout, "identical to the live bucket %s (%d keys)\n", eventlog.BucketRooms, len(a))
	return nil
}

// SnapshotOptions are what `jetmedia projections snapshot` was asked.
type SnapshotOptions struct {
	Room   string // "": every room of the log
	Every  int    // events between two snapshots (0: projections.SnapshotEvery)
	Verify bool   // then verify every snapshot of the rooms against the log, the long way
	Prune  bool   // only prune the rooms' snapshots (write none)
	Keep   int    // snapshots kept per room when pruning (0: projections.SnapshotKeepDefault)
}

// Snapshots writes snapshots of one room or every room: from each room's latest valid one to
// the log's head, one every o.Every events and one at the head, and prunes each room written
// to its newest o.Keep. With o.Prune it only prunes.
func Snapshots(ctx context.Context, js jetstream.JetStream, o SnapshotOptions, stdout, stderr io.Writer) error {
	var opts []projections.SnapshotOption
	if o.Keep != 0 {
		opts = append(opts, projections.SnapshotKeep(o.Keep))
	}
	logger := slog.New(slog.NewTextHandler(stderr, nil))
	store, err := projections.OpenSnapshotStore(ctx, js, logger, opts...)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		// A data directory no node of this version has run on yet.
		if _, err = js.CreateOrUpdateKeyValue(ctx, eventlog.SnapshotsBucketConfig(eventlog.StorageConfig{})); err != nil {
			return fmt.Errorf("create bucket %s: %w", eventlog.BucketSnapshots, err)
		}
		store, err = projections.OpenSnapshotStore(ctx, js, logger, opts...)
	}
	if err != nil {
		return err
	}
	rooms := []string{o.Room}
	if o.Room == "" {
		if rooms, err = projections.LogRooms(ctx, js); err != nil {
			return err
		}
	}
	if o.Prune {
		return pruneSnapshots(ctx, store, rooms, stdout)
	}
	var bad []string
	for _, room := range rooms {
		start := time.Now()
		n, err := store.WriteSnapshots(ctx, room, o.Every, true)
		if err != nil {
			return fmt.Errorf("room %s: %w", room, err)
		}
		fmt.Fprintf(stdout, "room %s: %d new snapshots in %s\n", room, n, time.Since(start).Round(time.Millisecond))
		if !o.Verify {
			continue
		}
		all, err := store.List(ctx, room)
		if err != nil {
			return err
		}
		for _, s := range all {
			if err := projections.VerifySnapshot(ctx, js, s); err != nil {
				bad = append(bad, room)
				fmt.Fprintf(stdout, "room %s: snapshot at #%d: %v\n", room, s.Seq, err)
			}
		}
		fmt.Fprintf(stdout, "room %s: %d snapshots verified against the log\n", room, len(all))
	}
	if len(bad) > 0 {
		return fmt.Errorf("snapshots that do not match the log in rooms %v", slices.Compact(bad))
	}
	return nil
}

// pruneSnapshots prunes the rooms' snapshots, then the bucket's markers of keys deleted more
// than 30 minutes ago.
func pruneSnapshots(ctx context.Context, store *projections.SnapshotStore, rooms []string, stdout io.Writer) error {
	total := 0
	for _, room := range rooms {
		n, err := store.Prune(ctx, room)
		if err != nil {
			return fmt.Errorf("room %s: %w", room, err)
		}
		if n > 0 {
			fmt.Fprintf(stdout, "room %s: %d snapshots deleted\n", room, n)
		}
		total += n
	}
	fmt.Fprintf(stdout, "%d snapshots deleted in %d rooms\n", total, len(rooms))
	return store.PurgeMarkers(ctx)
}
