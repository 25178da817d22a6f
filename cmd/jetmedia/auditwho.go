package main

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jetmedia/jetmedia/cmd/jetmedia/app"
	"github.com/jetmedia/jetmedia/events"
	"github.com/jetmedia/jetmedia/pipeline/eventlog"
	"github.com/jetmedia/jetmedia/projections"
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
		if q.From, err = parseInstant(*fromFlag, now); err != nil {
			return fmt.Errorf("--from: %w", err)
		}
	}
	if *toFlag != "" {
		if q.To, err = parseInstant(*toFlag, now); err != nil {
			return fmt.Errorf("--to: %w", err)
		}
	}
	var refs []projections.AuditRef
	note := ""
	if *baseURL != "" {
		refs, err = auditWhoHTTP(ctx, *baseURL, *token, q)
	} else {
		refs, note, err = auditWhoLocal(dataDir, q)
	}
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(refs)
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TIME\tROOM\tSEQ\tTYPE\tPEER\tNODE")
	for _, r := range refs {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\n", r.Time.Format(time.RFC3339Nano), r.Room, r.Seq, r.Type, r.Peer, r.Node)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%d events by %s", len(refs), *identity)
	if len(refs) == q.Limit {
		fmt.Fprint(stdout, " (the limit; narrow --from/--to or raise --limit)")
	}
	fmt.Fprintln(stdout)
	if note != "" {
		fmt.Fprintln(stderr, note)
	}
	return nil
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
	dir := filepath.Join(dataDir, app.ReadModelsDir)
	if _, err := os.Stat(dir); err != nil {
		return nil, "", fmt.Errorf("no read models in %s (jetmedia serve keeps them; run it on this directory first)", dataDir)
	}
	db, err := projections.OpenPebble(dir, nil, true)
	if err != nil {
		return nil, "", err
	}
	defer func() { _ = db.Close() }()
	refs, err := projections.AuditWho(db, q)
	if err != nil {
		return nil, "", err
	}
	cp, err := projections.Checkpoint(db, projections.AuditModelName)
	if err != nil {
		return nil, "", err
	}
	return refs, fmt.Sprintf("(audit index of %s, up to stream sequence %d; the server brings it up to date when it runs)", dataDir, cp), nil
}

func auditWhoHTTP(ctx context.Context, base, token string, q projections.AuditQuery) ([]projections.AuditRef, error) {
	v := url.Values{"identity": {q.Identity}, "limit": {strconv.Itoa(q.Limit)}}
	if !q.From.IsZero() {
		v.Set("from", q.From.Format(time.RFC3339Nano))
	}
	if !q.To.IsZero() {
		v.Set("to", q.To.Format(time.RFC3339Nano))
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(base, "/")+"/v1/audit/who?"+v.Encode(), nil)
	if err != nil {
		return nil, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return nil, fmt.Errorf("%s: %s: %s", req.URL.Path, resp.Status, strings.TrimSpace(string(b)))
	}
	var refs []projections.AuditRef
	if err := json.NewDecoder(resp.Body).Decode(&refs); err != nil {
		return nil, fmt.Errorf("%s: %w", req.URL.Path, err)
	}
	return refs, nil
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
	var cw *csv.Writer
	if *format == "csv" {
		cw = csv.NewWriter(stdout)
		if err := cw.Write([]string{"seq", "time", "type", "room", "actor", "node", "id", "causationid", "prevhash", "data"}); err != nil {
			return err
		}
	}
	n := 0
	err = eventlog.ReadStored(ctx, c.js, eventlog.ReadOptions{Filter: eventlog.RoomEventsFilter(*room)}, func(s eventlog.StoredEvent) error {
		n++
		if cw == nil {
			if _, err := stdout.Write(s.Data); err != nil {
				return err
			}
			_, err := io.WriteString(stdout, "\n")
			return err
		}
		e, err := events.Decode(s.Data)
		if err != nil {
			return fmt.Errorf("event at seq %d: %w", s.Seq, err)
		}
		return cw.Write([]string{strconv.FormatUint(s.Seq, 10), e.Time.Format(time.RFC3339Nano), e.Type, e.Room,
			e.Actor, e.Node, e.ID, e.CausationID, e.PrevHash, string(e.Data)})
	})
	if err != nil {
		return err
	}
	if cw != nil {
		cw.Flush()
		if err := cw.Error(); err != nil {
			return err
		}
	}
	if n == 0 {
		return fmt.Errorf("room %q has no events", *room)
	}
	return nil
}
