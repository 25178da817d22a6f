package logtools

import (
	"context"
	"encoding/csv"
	"encoding/json"
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

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetmedia/jetmedia/events"
	"github.com/jetmedia/jetmedia/pipeline/eventlog"
	"github.com/jetmedia/jetmedia/projections"
	"github.com/jetmedia/jetmedia/projections/readmodels"
)

// PrintWho prints what `jetmedia audit who` found: JSON, or a table and a count line (and the
// note, if any, on stderr).
func PrintWho(stdout, stderr io.Writer, refs []projections.AuditRef, q projections.AuditQuery, asJSON bool, note string) error {
	if asJSON {
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
	fmt.Fprintf(stdout, "%d events by %s", len(refs), q.Identity)
	if len(refs) == q.Limit {
		fmt.Fprint(stdout, " (the limit; narrow --from/--to or raise --limit)")
	}
	fmt.Fprintln(stdout)
	if note != "" {
		fmt.Fprintln(stderr, note)
	}
	return nil
}

// WhoLocal reads the audit index in dataDir's read models (the caller holds the directory's
// lock) and returns a note saying how current it is.
func WhoLocal(dataDir string, q projections.AuditQuery) ([]projections.AuditRef, string, error) {
	dir := filepath.Join(dataDir, readmodels.Dir)
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

// WhoHTTP asks a running server's GET /v1/audit/who.
func WhoHTTP(ctx context.Context, base, token string, q projections.AuditQuery) ([]projections.AuditRef, error) {
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

// Export writes a room's events from the log: jsonl (each event exactly as stored, so the hash
// chain can be checked on the lines) or csv (one row per event, data as JSON).
func Export(ctx context.Context, js jetstream.JetStream, room, format string, stdout io.Writer) error {
	var cw *csv.Writer
	if format == "csv" {
		cw = csv.NewWriter(stdout)
		if err := cw.Write([]string{"seq", "time", "type", "room", "actor", "node", "id", "causationid", "prevhash", "data"}); err != nil {
			return err
		}
	}
	n := 0
	err := eventlog.ReadStored(ctx, js, eventlog.ReadOptions{Filter: eventlog.RoomEventsFilter(room)}, func(s eventlog.StoredEvent) error {
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
		return fmt.Errorf("room %q has no events", room)
	}
	return nil
}
