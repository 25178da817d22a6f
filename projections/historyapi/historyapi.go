package historyapi

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetmedia/jetmedia/events"
	"github.com/jetmedia/jetmedia/pipeline/eventlog"
	"github.com/jetmedia/jetmedia/pipeline/httpserver"
	"github.com/jetmedia/jetmedia/pipeline/rtc"
	"github.com/jetmedia/jetmedia/projections"
	"github.com/jetmedia/jetmedia/projections/roomsapi"
)

// The history API reads the event log itself, not the KV projection: a room's events as
// stored, and its state folded at any instant.
//
// GET /v1/rooms/{room}/events?from=&to=&type=&limit=
//
//	Streams the room's events as JSON lines (application/x-ndjson), in log order. Each line is
//	the event exactly as stored, so the SHA-256 of a line is the next event's prevhash (without
//	a type filter). from and to each take a stream sequence (digits, inclusive) or an RFC 3339
//	time: from=T skips events stamped before T; to=T stops at the first event stamped after T,
//	as replay --at does. type is a comma-separated list of event types; one without its
//	version (peer.left) matches every version. limit (default 1000, at most 10000) caps the
//	page: a page cut short ends with the line {"next":"<seq>"}; pass it as from for the next
//	page. A page that reached the end (the room's head when the request began, or to) has no
//	such line.
//
// GET /v1/rooms/{room}/state?at=
//
//	The room's state (the same JSON as GET /v1/rooms/{room}) folded from the log up to at (RFC
//	3339), from the nearest snapshot before it: who was there, what they published and
//	watched. Without at, the live projection's state (a room it does not hold yet is folded).
//
// Both answer 400 with a plain-text reason for a bad room id or parameter, and 404 for a room
// with no events (state: none at or before at).
const (
	defaultEventsLimit = 1000
	maxEventsLimit     = 10000
	// flushEvery lines, the events stream is pushed to the client.
	flushEvery = 256
)

//go:embed web
var webFS embed.FS

// Heads tells a room's newest stream sequence (eventlog.Appender does).
type Heads interface {
	LastSeq(ctx context.Context, room string) (uint64, error)
}

// API serves a room's history from the log.
type API struct {
	JS        jetstream.JetStream
	Heads     Heads
	Authorize roomsapi.Authorizer
	Logger    *slog.Logger
	// Snapshots, when set, is where a state's fold starts: the nearest snapshot before the
	// instant, then the events after it (nil: the room's whole log).
	Snapshots *projections.SnapshotStore
	// Rooms, when set, is the rooms bucket (the live projection): /state without at reads it.
	Rooms jetstream.KeyValue
	// WriteTimeout is the server's: the events stream moves its write deadline this far ahead
	// each time it flushes, so a long page is not cut while a reader that stops still is.
	WriteTimeout time.Duration
}

// Register adds the history endpoints, each behind the admin grant for its room (the log tells
// who was where: not for every token holder), and the timeline page.
func (a API) Register(mux *http.ServeMux) {
	if a.Logger == nil {
		a.Logger = slog.New(slog.DiscardHandler)
	}
	mux.HandleFunc("GET /v1/rooms/{room}/events", a.adminOnly(a.handleRoomEvents))
	mux.HandleFunc("GET /v1/rooms/{room}/state", a.adminOnly(a.handleRoomState))
	web, err := fs.Sub(webFS, "web")
	if err != nil {
		panic(err) // the embedded directory exists
	}
	files := http.FileServerFS(web)
	mux.Handle("GET /timeline.html", files)
	mux.Handle("GET /timeline.js", files)
}

func (a API) adminOnly(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		room, ok := rtc.RoomFromPath(w, r, a.Logger)
		if !ok {
			return
		}
		if a.Authorize(w, r, room) {
			h(w, r)
		}
	}
}

var typePattern = regexp.MustCompile(`^[a-z][a-z_]*(\.[a-z][a-z_]*)*$`)

// bound is one end of an events range: a stream sequence or an instant (or neither).
type bound struct {
	seq uint64
	at  time.Time
}

func parseBound(name, v string) (bound, error) {
	if v == "" {
		return bound{}, nil
	}
	if v[0] >= '0' && v[0] <= '9' && !strings.ContainsAny(v, "-:T") {
		seq, err := strconv.ParseUint(v, 10, 64)
		if err != nil || seq == 0 {
			return bound{}, rtc.Errorf(http.StatusBadRequest, "%s=%q: a stream sequence is a whole number from 1", name, v)
		}
		return bound{seq: seq}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return bound{}, rtc.Errorf(http.StatusBadRequest, "%s=%q is neither a stream sequence nor an RFC 3339 time (2026-11-03T14:03:00Z)", name, v)
	}
	return bound{at: t}, nil
}

// eventsQuery is the parsed query of GET /v1/rooms/{room}/events.
type eventsQuery struct {
	from, to bound
	types    map[string]bool // exact types, and bare ones without version
	limit    int
}

func parseEventsQuery(r *http.Request) (eventsQuery, error) {
	q := eventsQuery{limit: defaultEventsLimit}
	vals := r.URL.Query()
	for k, v := range vals {
		switch k {
		case "from", "to", "type", "limit":
			if len(v) > 1 {
				return q, rtc.Errorf(http.StatusBadRequest, "%s given %d times", k, len(v))
			}
		default:
			return q, rtc.Errorf(http.StatusBadRequest, "unknown parameter %q (from, to, type, limit)", k)
		}
	}
	var err error
	if q.from, err = parseBound("from", vals.Get("from")); err != nil {
		return q, err
	}
	if q.to, err = parseBound("to", vals.Get("to")); err != nil {
		return q, err
	}
	if q.from.seq != 0 && q.to.seq != 0 && q.from.seq > q.to.seq {
		return q, rtc.Errorf(http.StatusBadRequest, "from=%d is after to=%d", q.from.seq, q.to.seq)
	}
	if !q.from.at.IsZero() && !q.to.at.IsZero() && q.from.at.After(q.to.at) {
		return q, rtc.Errorf(http.StatusBadRequest, "from is after to")
	}
	if v := vals.Get("type"); v != "" {
		q.types = map[string]bool{}
		for _, t := range strings.Split(v, ",") {
			if base, _ := splitVersion(t); !typePattern.MatchString(base) {
				return q, rtc.Errorf(http.StatusBadRequest, "type=%q: give event types such as peer.joined.v1 or peer.joined, comma-separated", t)
			}
			q.types[t] = true
		}
	}
	if v := vals.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxEventsLimit {
			return q, rtc.Errorf(http.StatusBadRequest, "limit=%q: a whole number from 1 to %d", v, maxEventsLimit)
		}
		q.limit = n
	}
	return q, nil
}

// splitVersion splits "peer.left.v2" into "peer.left" and "v2"; a type without a version
// comes back whole with "".
func splitVersion(t string) (string, string) {
	i := strings.LastIndexByte(t, '.')
	if i < 0 || len(t) < i+3 || t[i+1] != 'v' {
		return t, ""
	}
	if _, err := strconv.ParseUint(t[i+2:], 10, 32); err != nil {
		return t, ""
	}
	return t[:i], t[i+1:]
}

func (q eventsQuery) wants(eventType string) bool {
	if q.types == nil || q.types[eventType] {
		return true
	}
	base, _ := splitVersion(eventType)
	return q.types[base]
}

// needsDecode reports whether the filters look inside events (time, type).
func (q eventsQuery) needsDecode() bool {
	return q.types != nil || !q.from.at.IsZero() || !q.to.at.IsZero()
}

// errPageDone stops the read when a page is complete.
var errPageDone = errors.New("page done")

func (a API) handleRoomEvents(w http.ResponseWriter, r *http.Request) {
	room, ok := rtc.RoomFromPath(w, r, a.Logger)
	if !ok {
		return
	}
	q, err := parseEventsQuery(r)
	if err != nil {
		rtc.WriteError(w, r, a.Logger, err)
		return
	}
	ctx := r.Context()
	head, err := a.Heads.LastSeq(ctx, room)
	if err != nil {
		rtc.WriteError(w, r, a.Logger, err)
		return
	}
	if head == 0 {
		rtc.WriteError(w, r, a.Logger, rtc.Errorf(http.StatusNotFound, "room %q has no events", room))
		return
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("Cache-Control", "no-store")
	rc := http.NewResponseController(w)
	sent := 0
	opts := eventlog.ReadOptions{Filter: eventlog.RoomEventsFilter(room), FromSeq: max(q.from.seq, 1)}
	err = eventlog.ReadStored(ctx, a.JS, opts, func(s eventlog.StoredEvent) error {
		if q.to.seq != 0 && s.Seq > q.to.seq {
			return errPageDone
		}
		if q.needsDecode() {
			e, err := events.Decode(s.Data)
			if err != nil {
				return fmt.Errorf("stored event %d: %w", s.Seq, err)
			}
			if !projections.Before(e, q.to.at) {
				return errPageDone
			}
			if e.Time.Before(q.from.at) || !q.wants(e.Type) {
				return nil
			}
		}
		if _, err := w.Write(s.Data); err != nil {
			return err
		}
		if _, err := w.Write([]byte{'\n'}); err != nil {
			return err
		}
		if sent++; sent%flushEvery == 0 {
			_ = rc.Flush()
			if a.WriteTimeout > 0 {
				httpserver.Extend(w, a.WriteTimeout)
			}
		}
		if sent == q.limit {
			if s.Seq < head && (q.to.seq == 0 || s.Seq < q.to.seq) {
				_, err := fmt.Fprintf(w, "{\"next\":\"%d\"}\n", s.Seq+1)
				if err != nil {
					return err
				}
			}
			return errPageDone
		}
		return nil
	})
	if err != nil && !errors.Is(err, errPageDone) {
		if sent == 0 {
			rtc.WriteError(w, r, a.Logger, err)
			return
		}
		// Headers are gone: abort the response so the client sees it cut, not complete.
		a.Logger.Warn("events stream aborted", "room", room, "events_sent", sent, "err", err)
		panic(http.ErrAbortHandler)
	}
	_ = rc.Flush()
}

func (a API) handleRoomState(w http.ResponseWriter, r *http.Request) {
	room, ok := rtc.RoomFromPath(w, r, a.Logger)
	if !ok {
		return
	}
	var at time.Time
	for k, v := range r.URL.Query() {
		if k != "at" {
			rtc.WriteError(w, r, a.Logger, rtc.Errorf(http.StatusBadRequest, "unknown parameter %q (at)", k))
			return
		}
		if len(v) > 1 {
			rtc.WriteError(w, r, a.Logger, rtc.Errorf(http.StatusBadRequest, "at given %d times", len(v)))
			return
		}
		var err error
		if at, err = time.Parse(time.RFC3339Nano, v[0]); err != nil {
			rtc.WriteError(w, r, a.Logger, rtc.Errorf(http.StatusBadRequest, "at=%q is not an RFC 3339 time (2026-11-03T14:03:00Z)", v[0]))
			return
		}
	}
	if at.IsZero() && a.Rooms != nil {
		// Now: the live projection (what GET /v1/rooms/{room} reads), not a fold. A room it
		// does not hold yet (its events not folded so far) is folded from the log below.
		if live, err := projections.LoadRoom(r.Context(), a.Rooms, room); err == nil && live.Exists() {
			roomsapi.WriteJSON(w, roomsapi.ViewOf(live))
			return
		}
	}
	httpserver.Extend(w, httpserver.SlowWork) // a fold from the nearest snapshot (or the log's start)
	state, _, err := projections.StateAtFrom(r.Context(), a.JS, a.Snapshots, room, at, nil)
	if err != nil {
		rtc.WriteError(w, r, a.Logger, err)
		return
	}
	if !state.Exists() {
		if at.IsZero() {
			rtc.WriteError(w, r, a.Logger, rtc.Errorf(http.StatusNotFound, "room %q has no events", room))
		} else {
			rtc.WriteError(w, r, a.Logger, rtc.Errorf(http.StatusNotFound, "room %q has no events at or before %s", room, at.Format(time.RFC3339Nano)))
		}
		return
	}
	roomsapi.WriteJSON(w, roomsapi.ViewOf(state))
}
