package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetmedia/jetmedia/cmd/jetmedia/app"
	"github.com/jetmedia/jetmedia/events"
	"github.com/jetmedia/jetmedia/pipeline/natsnode"
	"github.com/jetmedia/jetmedia/projections"
	"github.com/jetmedia/jetmedia/projections/logtools"
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
			// The node's own credentials: only they may write (a rebuild writes a bucket).
			return dial(u, nats.UserInfo(app.RunningNATSCredentials(c.dataDir)))
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

// dial connects to a running node: with the credentials in url (nats://user:pass@host:port),
// or opts, or as a reader (a node without a reader password takes clients with none).
func dial(url string, opts ...nats.Option) (*conn, error) {
	nc, err := nats.Connect(url, append([]nats.Option{nats.Name("jetmedia-cli")}, opts...)...)
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
	var o logtools.TailOptions
	fs.StringVar(&o.Room, "room", "", "only this room's events")
	fs.BoolVar(&o.FromStart, "from-start", false, "print the stored history first")
	fs.BoolVar(&o.NoFollow, "no-follow", false, "exit after the stored history instead of following new events")
	if err := parse(fs, args, stderr); err != nil {
		return err
	}
	if o.Room != "" && !events.ValidID(o.Room) {
		return fmt.Errorf("room %q is not a valid id", o.Room)
	}
	c, err := cf.open(ctx)
	if err != nil {
		return err
	}
	defer c.close()
	return logtools.Tail(ctx, c.js, o, stdout)
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
	return logtools.Rooms(ctx, c.js, *all, *asJSON, stdout)
}

func clusterCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "forget" {
		return clusterForgetCmd(ctx, args[1:], stdout, stderr)
	}
	if len(args) > 0 && args[0] == "unforget" {
		return clusterUnforgetCmd(ctx, args[1:], stdout, stderr)
	}
	fs := flag.NewFlagSet("cluster", flag.ContinueOnError)
	var cf connFlags
	cf.register(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parse(fs, args, stderr); err != nil {
		return err
	}
	c, err := cf.open(ctx)
	if err != nil {
		return err
	}
	defer c.close()
	return logtools.Cluster(ctx, c.js, *asJSON, stdout)
}

func replay(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("replay", flag.ContinueOnError)
	var cf connFlags
	cf.register(fs)
	var o logtools.ReplayOptions
	fs.StringVar(&o.Room, "room", "", "the room to replay (required)")
	atFlag := fs.String("at", "", "replay up to this instant: RFC 3339 (2026-11-03T14:03:00Z) or a duration ago (5m, 2h30m); default: now")
	fs.BoolVar(&o.JSON, "json", false, "print JSON: {at, from_snapshot, events, state}")
	fs.BoolVar(&o.Full, "full", false, "print the timeline from the room's first event, without starting from a snapshot")
	if err := parse(fs, args, stderr); err != nil {
		return err
	}
	if !events.ValidID(o.Room) {
		return fmt.Errorf("--room %q: give a valid room id", o.Room)
	}
	if *atFlag != "" {
		var err error
		if o.At, err = logtools.ParseInstant(*atFlag, time.Now()); err != nil {
			return fmt.Errorf("--at: %w", err)
		}
	}
	c, err := cf.open(ctx)
	if err != nil {
		return err
	}
	defer c.close()
	return logtools.Replay(ctx, c.js, o, stdout, stderr)
}

func projectionsCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "snapshot" {
		return snapshotCmd(ctx, args[1:], stdout, stderr)
	}
	if len(args) == 0 || args[0] != "rebuild" {
		fmt.Fprintln(stderr, "usage: jetmedia projections rebuild [--bucket B] [--from-snapshots] | snapshot [--room R] [--every N] [--verify] [--prune] [--keep K]  [--nats URL | --data DIR]")
		return errUsage
	}
	fs := flag.NewFlagSet("projections rebuild", flag.ContinueOnError)
	var cf connFlags
	cf.register(fs)
	bucket := fs.String("bucket", "rooms-rebuild", "bucket to rebuild into (created fresh; never the live one)")
	fromSnapshots := fs.Bool("from-snapshots", false, "fold each room from its newest valid snapshot (checked against the log) and the events after it, instead of the whole log")
	if err := parse(fs, args[1:], stderr); err != nil {
		return err
	}
	c, err := cf.open(ctx)
	if err != nil {
		return err
	}
	defer c.close()
	return logtools.Rebuild(ctx, c.js, *bucket, *fromSnapshots, stdout, stderr)
}

func snapshotCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("projections snapshot", flag.ContinueOnError)
	var cf connFlags
	cf.register(fs)
	var o logtools.SnapshotOptions
	fs.StringVar(&o.Room, "room", "", "the room to snapshot (default: every room of the log)")
	fs.IntVar(&o.Every, "every", projections.SnapshotEvery, "events between two snapshots")
	fs.BoolVar(&o.Verify, "verify", false, "then verify every snapshot of the rooms against the log (folds each room's log)")
	fs.BoolVar(&o.Prune, "prune", false, "only delete each room's snapshots but the newest --keep (never the newest valid one); write none")
	fs.IntVar(&o.Keep, "keep", projections.SnapshotKeepDefault, "snapshots kept per room when pruning (after writing, or with --prune); at least 1")
	if err := parse(fs, args, stderr); err != nil {
		return err
	}
	if o.Room != "" && !events.ValidID(o.Room) {
		return fmt.Errorf("--room %q: give a valid room id", o.Room)
	}
	if o.Keep < 1 {
		return fmt.Errorf("--keep %d: keep at least 1 snapshot per room", o.Keep)
	}
	c, err := cf.open(ctx)
	if err != nil {
		return err
	}
	defer c.close()
	return logtools.Snapshots(ctx, c.js, o, stdout, stderr)
}
