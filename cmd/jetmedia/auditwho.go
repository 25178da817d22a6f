package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/jetmedia/jetmedia/cmd/jetmedia/app"
	"github.com/jetmedia/jetmedia/events"
	"github.com/jetmedia/jetmedia/projections"
	"github.com/jetmedia/jetmedia/projections/logtools"
)

// auditWho lists what one identity did across rooms, from the audit index (a pebble read
// model). The index belongs to the server: with no server on --data it is read from the
// directory; with one, pebble's lock keeps it to the server, and --url asks its HTTP API.
func auditWho(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("audit who", flag.ContinueOnError)
	dataDir := "./data"
	if d := os.Getenv("JETMEDIA_DATA"); d != "" {
		dataDir = d
	}
	fs.StringVar(&dataDir, "data", dataDir, "data directory of the node (env JETMEDIA_DATA); read when no server runs on it")
	identity := fs.String("identity", "", "the identity (token subject, the events' actor) to list")
	fromFlag := fs.String("from", "", "only events at or after: RFC 3339 or a duration ago (2h)")
	toFlag := fs.String("to", "", "only events at or before: RFC 3339 or a duration ago")
	limit := fs.Int("limit", 1000, "at most this many events")
	asJSON := fs.Bool("json", false, "print JSON: a list of {time, room, seq, id, type, identity, node, peer}")
	baseURL := fs.String("url", os.Getenv("JETMEDIA_URL"), "ask a running server's HTTP API instead (env JETMEDIA_URL)")
	token := fs.String("token", os.Getenv("JETMEDIA_TOKEN"), "token with the admin grant for every room, for --url (env JETMEDIA_TOKEN)")
	if err := parse(fs, args, stderr); err != nil {
		return err
	}
	if *identity == "" {
		return errors.New("--identity is required")
	}
	now := time.Now()
	q := projections.AuditQuery{Identity: *identity, Limit: *limit}
	var err error
	if *fromFlag != "" {
		if q.From, err = logtools.ParseInstant(*fromFlag, now); err != nil {
			return fmt.Errorf("--from: %w", err)
		}
	}
	if *toFlag != "" {
		if q.To, err = logtools.ParseInstant(*toFlag, now); err != nil {
			return fmt.Errorf("--to: %w", err)
		}
	}
	var refs []projections.AuditRef
	note := ""
	if *baseURL != "" {
		refs, err = logtools.WhoHTTP(ctx, *baseURL, *token, q)
	} else {
		refs, note, err = auditWhoLocal(dataDir, q)
	}
	if err != nil {
		return err
	}
	return logtools.PrintWho(stdout, stderr, refs, q, *asJSON, note)
}

func auditWhoLocal(dataDir string, q projections.AuditQuery) ([]projections.AuditRef, string, error) {
	unlock, err := app.LockDataDir(dataDir)
	if errors.Is(err, app.ErrDataDirBusy) {
		return nil, "", fmt.Errorf("%w: its audit index is the server's; ask it over HTTP with --url http://HOST:PORT "+
			"(and --token with an admin token for room *), or GET /v1/audit/who?identity=…", err)
	}
	if err != nil {
		return nil, "", err
	}
	defer unlock()
	return logtools.WhoLocal(dataDir, q)
}

// auditExport writes a room's events from the log: jsonl (each event exactly as stored, so
// the hash chain can be checked on the lines) or csv (one row per event, data as JSON).
func auditExport(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("audit export", flag.ContinueOnError)
	var cf connFlags
	cf.register(fs)
	room := fs.String("room", "", "the room to export")
	format := fs.String("format", "jsonl", "jsonl or csv")
	if err := parse(fs, args, stderr); err != nil {
		return err
	}
	if !events.ValidID(*room) {
		return fmt.Errorf("--room %q: give a valid room id", *room)
	}
	if *format != "jsonl" && *format != "csv" {
		return fmt.Errorf("--format %q: jsonl or csv", *format)
	}
	c, err := cf.open(ctx)
	if err != nil {
		return err
	}
	defer c.close()
	return logtools.Export(ctx, c.js, *room, *format, stdout)
}
