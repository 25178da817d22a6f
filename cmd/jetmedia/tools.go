package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetmedia/jetmedia/cmd/jetmedia/app"
	"github.com/jetmedia/jetmedia/events"
	"github.com/jetmedia/jetmedia/pipeline/eventlog"
	"github.com/jetmedia/jetmedia/pipeline/natsnode"
	"github.com/jetmedia/jetmedia/projections"
)

// conn is the CLI's way into a node's JetStream.
type conn struct {
	js    jetstream.JetStream
	close func()
	// offline is set when no node runs on the data directory: the CLI's own server opened it
	// and holds its lock, so the node's other files (its read models) are the CLI's too.
	offline bool
}

type connFlags struct {
	natsURL string
	dataDir string
}

func (c *connFlags) register(fs *flag.FlagSet) {
	c.natsURL = os.Getenv("JETMEDIA_NATS")
	c.dataDir = "./data"
	if d := os.Getenv("JETMEDIA_DATA"); d != "" {
		c.dataDir = d
	}
	fs.StringVar(&c.natsURL, "nats", c.natsURL, "NATS URL of a running node (env JETMEDIA_NATS)")
	fs.StringVar(&c.dataDir, "data", c.dataDir, "data directory of the node (env JETMEDIA_DATA)")
}

// open connects to the given NATS URL; without one it uses the data directory: the URL a
// running server announced there, or an embedded server of its own on the directory.
func (c *connFlags) open(ctx context.Context) (*conn, error) {
	if c.natsURL != "" {
		return dial(c.natsURL)
	}
	unlock, err := app.LockDataDir(c.dataDir)
	if errors.Is(err, app.ErrDataDirBusy) {
		if u := app.RunningNATSURL(c.dataDir); u != "" {
			return dial(u)
		}
		return nil, fmt.Errorf("%w; restart it with --nats-listen 127.0.0.1:4222 and pass --nats nats://127.0.0.1:4222", err)
	}
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(filepath.Join(c.dataDir, "jetstream")); err != nil {
		unlock()
		return nil, fmt.Errorf("no jetmedia data in %s (run jetmedia serve first, or pass --data or --nats)", c.dataDir)
	}
	srv, err := natsnode.StartServer(ctx, natsnode.ServerConfig{Name: "jetmedia-cli", JetStream: true,
		StoreDir: c.dataDir})
	if err != nil {
		unlock()
		return nil, err
	}
	nc, err := srv.Connect("jetmedia-cli")
	if err != nil {
		srv.Shutdown()
		unlock()
		return nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		srv.Shutdown()
		unlock()
		return nil, err
	}
	return &conn{js: js, close: func() { nc.Close(); srv.Shutdown(); unlock() }, offline: true}, nil
}

func dial(url string) (*conn, error) {
	nc, err := nats.Connect(url, nats.Name("jetmedia-cli"))
	if err != nil {
		return nil, fmt.Errorf("connect %s: %w", url, err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, err
	}
	return &conn{js: js, close: nc.Close}, nil
}

func parse(fs *flag.FlagSet, args []string, stderr io.Writer) error {
	fs.SetOutput(stderr)
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%s: unexpected arguments %q", fs.Name(), fs.Args())
	}
	return nil
}

func tail(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("tail", flag.ContinueOnError)
	var cf connFlags
	cf.register(fs)
	room := fs.String("room", "", "only this room's events")
	fromStart := fs.Bool("from-start", false, "print the stored history first")
	noFollow := fs.Bool("no-follow", false, "exit after the stored history instead of following new events")
	if err := parse(fs, args, stderr); err != nil {
		return err
	}
	filter := eventlog.EventsSubjects
	if *room != "" {
		if !events.ValidID(*room) {
			return fmt.Errorf("room %q is not a valid id", *room)
		}
		filter = eventlog.RoomEventsFilter(*room)
	}
	c, err := cf.open(ctx)
	if err != nil {
		return err
	}
	defer c.close()
	enc := json.NewEncoder(stdout)
	print := func(e events.Envelope) error { return enc.Encode(e) }
	opts := eventlog.ReadOptions{Filter: filter}
	if *noFollow {
		return eventlog.Read(ctx, c.js, opts, print)
	}
	if *fromStart {
		opts.FromSeq = 1
	}
	return eventlog.Follow(ctx, c.js, opts, print)
}

func rooms(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("rooms", flag.ContinueOnError)
	var cf connFlags
	cf.register(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	all := fs.Bool("all", false, "include rooms nobody is in")
	if err := parse(fs, args, stderr); err != nil {
		return err
	}
	c, err := cf.open(ctx)
	if err != nil {
		return err
	}
	defer c.close()
	kv, err := c.js.KeyValue(ctx, eventlog.BucketRooms)
	if err != nil {
		return fmt.Errorf("bucket %s: %w", eventlog.BucketRooms, err)
	}
	list, err := projections.Rooms(ctx, kv)
	if err != nil {
		return err
	}
	views := []app.RoomView{}
	for _, r := range list {
		if *all || len(r.Peers) > 0 {
			views = append(views, app.ViewOf(r))
		}
	}
	if *asJSON {
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

func printState(w io.Writer, v app.RoomView) {
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

func replay(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("replay", flag.ContinueOnError)
	var cf connFlags
	cf.register(fs)
	room := fs.String("room", "", "the room to replay (required)")
	atFlag := fs.String("at", "", "replay up to this instant: RFC 3339 (2026-11-03T14:03:00Z) or a duration ago (5m, 2h30m); default: now")
	asJSON := fs.Bool("json", false, "print JSON: {at, events, state}")
	if err := parse(fs, args, stderr); err != nil {
		return err
	}
	if !events.ValidID(*room) {
		return fmt.Errorf("--room %q: give a valid room id", *room)
	}
	var at time.Time
	if *atFlag != "" {
		var err error
		if at, err = parseInstant(*atFlag, time.Now()); err != nil {
			return fmt.Errorf("--at: %w", err)
		}
	}
	c, err := cf.open(ctx)
	if err != nil {
		return err
	}
	defer c.close()
	head, err := headSeq(ctx, c.js, eventlog.RoomEventsFilter(*room))
	if err != nil {
		return err
	}
	if head == 0 {
		return fmt.Errorf("room %q has no events", *room)
	}
	prog := newProgress(stderr, "replay", head)
	var log []events.Envelope
	out := bufio.NewWriter(stdout)
	state, err := projections.StateAt(ctx, c.js, *room, at, func(e events.Envelope) error {
		prog.tick(e.Seq)
		if *asJSON {
			log = append(log, e)
			return nil
		}
		_, err := fmt.Fprintln(out, timelineLine(e))
		return err
	})
	prog.done()
	if err != nil {
		return err
	}
	if !state.Exists() {
		return fmt.Errorf("room %q has no events at or before %s", *room, at.Format(time.RFC3339Nano))
	}
	if *asJSON {
		if log == nil {
			log = []events.Envelope{}
		}
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		var atOut *time.Time
		if !at.IsZero() {
			atOut = &at
		}
		if err := enc.Encode(struct {
			At     *time.Time        `json:"at,omitempty"`
			Events []events.Envelope `json:"events"`
			State  app.RoomView      `json:"state"`
		}{atOut, log, app.ViewOf(state)}); err != nil {
			return err
		}
		return out.Flush()
	}
	if at.IsZero() {
		fmt.Fprintln(out, "\nstate after the last event:")
	} else {
		fmt.Fprintf(out, "\nstate at %s:\n", at.Format(time.RFC3339Nano))
	}
	printState(out, app.ViewOf(state))
	return out.Flush()
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

func projectionsCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "rebuild" {
		fmt.Fprintln(stderr, "usage: jetmedia projections rebuild [--bucket B] [--nats URL | --data DIR]")
		return errUsage
	}
	fs := flag.NewFlagSet("projections rebuild", flag.ContinueOnError)
	var cf connFlags
	cf.register(fs)
	bucket := fs.String("bucket", "rooms-rebuild", "bucket to rebuild into (created fresh; never the live one)")
	if err := parse(fs, args[1:], stderr); err != nil {
		return err
	}
	c, err := cf.open(ctx)
	if err != nil {
		return err
	}
	defer c.close()
	start := time.Now()
	n, err := projections.Rebuild(ctx, c.js, *bucket, eventlog.StorageConfig{})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "folded %d events into bucket %s in %s\n", n, *bucket, time.Since(start).Round(time.Millisecond))
	live, err := c.js.KeyValue(ctx, eventlog.BucketRooms)
	if err != nil {
		return fmt.Errorf("bucket %s: %w", eventlog.BucketRooms, err)
	}
	rebuilt, err := c.js.KeyValue(ctx, *bucket)
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
