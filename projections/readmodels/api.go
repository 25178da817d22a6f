package readmodels

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetmedia/jetmedia/events"
	"github.com/jetmedia/jetmedia/pipeline/auth"
	"github.com/jetmedia/jetmedia/pipeline/httpserver"
	"github.com/jetmedia/jetmedia/pipeline/rtc"
	"github.com/jetmedia/jetmedia/projections"
)

// Authorizer lets a request to an admin endpoint of room (auth.AnyRoom for the endpoints that
// span rooms) through, or answers 401/403 and returns false. The node's wiring supplies it.
type Authorizer func(w http.ResponseWriter, r *http.Request, room string) bool

// API serves the read models of a node; Models is nil on a node without JetStream of its own,
// which keeps none.
type API struct {
	Models    *Runner
	JS        jetstream.JetStream
	Node      string
	Authorize Authorizer
	Logger    *slog.Logger
}

// Register serves the pebble read models:
//
//	GET /v1/audit/who?identity=I[&from=T][&to=T][&limit=N]   admin grant for every room
//	GET /v1/analytics/rooms/{room}                            admin grant for the room
//	GET /v1/audit/anchor[?room=R]                             admin grant for every room
//
// The anchor (unsigned: sign it, or store it, where this node cannot write) is computed from
// the log on each request, a full chain verification: for a cron job, not a dashboard.
func (api API) Register(mux *http.ServeMux) {
	if api.Logger == nil {
		api.Logger = slog.New(slog.DiscardHandler)
	}
	mux.HandleFunc("GET /v1/audit/anchor", func(w http.ResponseWriter, r *http.Request) {
		if !api.Authorize(w, r, auth.AnyRoom) {
			return
		}
		room := r.URL.Query().Get("room")
		if room != "" && !events.ValidID(room) {
			rtc.WriteError(w, r, api.Logger, rtc.Errorf(http.StatusBadRequest, "room %q is not a valid id", room))
			return
		}
		httpserver.Extend(w, httpserver.SlowWork) // a verification of the whole log
		chains, err := projections.VerifyChains(r.Context(), api.JS, room, nil)
		if err != nil {
			rtc.WriteError(w, r, api.Logger, err)
			return
		}
		if room != "" && len(chains) == 0 {
			rtc.WriteError(w, r, api.Logger, rtc.Errorf(http.StatusNotFound, "room %q has no events", room))
			return
		}
		a, err := projections.NewAnchor(chains, api.Node, time.Now())
		if err != nil {
			// A broken chain: anchoring it would vouch for it.
			rtc.WriteError(w, r, api.Logger, rtc.Errorf(http.StatusConflict, "%v", err))
			return
		}
		writeJSON(w, a)
	})
	mux.HandleFunc("GET /v1/audit/who", func(w http.ResponseWriter, r *http.Request) {
		if !api.Authorize(w, r, auth.AnyRoom) {
			return
		}
		q, err := ParseAuditQuery(r.URL.Query().Get, r.URL.Query())
		if err != nil {
			rtc.WriteError(w, r, api.Logger, rtc.Errorf(http.StatusBadRequest, "%v", err))
			return
		}
		if api.Models == nil {
			rtc.WriteError(w, r, api.Logger, rtc.Errorf(http.StatusNotFound, "this node keeps no read models (no JetStream)"))
			return
		}
		refs, err := projections.AuditWho(api.Models.db, q)
		if err != nil {
			rtc.WriteError(w, r, api.Logger, err)
			return
		}
		writeJSON(w, refs)
	})
	mux.HandleFunc("GET /v1/analytics/rooms/{room}", func(w http.ResponseWriter, r *http.Request) {
		id, ok := rtc.RoomFromPath(w, r, api.Logger)
		if !ok {
			return
		}
		if !api.Authorize(w, r, id) {
			return
		}
		if api.Models == nil {
			rtc.WriteError(w, r, api.Logger, rtc.Errorf(http.StatusNotFound, "this node keeps no read models (no JetStream)"))
			return
		}
		a, ok, err := projections.LoadAnalytics(api.Models.db, id)
		if err != nil {
			rtc.WriteError(w, r, api.Logger, err)
			return
		}
		if !ok {
			rtc.WriteError(w, r, api.Logger, rtc.Errorf(http.StatusNotFound, "room %q has no figures", id))
			return
		}
		writeJSON(w, a.Figures(time.Now()))
	})
}

// ParseAuditQuery reads identity, from, to (RFC 3339) and limit (default 1000, at most
// 100000); any other parameter is an error.
func ParseAuditQuery(get func(string) string, all map[string][]string) (projections.AuditQuery, error) {
	q := projections.AuditQuery{Identity: get("identity"), Limit: 1000}
	for k := range all {
		switch k {
		case "identity", "from", "to", "limit":
		default:
			return q, fmt.Errorf("unknown parameter %q", k)
		}
	}
	if q.Identity == "" {
		return q, errors.New("identity is required")
	}
	var err error
	if s := get("from"); s != "" {
		if q.From, err = time.Parse(time.RFC3339Nano, s); err != nil {
			return q, fmt.Errorf("from: %q is not an RFC 3339 time", s)
		}
	}
	if s := get("to"); s != "" {
		if q.To, err = time.Parse(time.RFC3339Nano, s); err != nil {
			return q, fmt.Errorf("to: %q is not an RFC 3339 time", s)
		}
	}
	if s := get("limit"); s != "" {
		l, err := strconv.Atoi(s)
		if err != nil || l < 1 || l > 100000 {
			return q, fmt.Errorf("limit: %q is not a number from 1 to 100000", s)
		}
		q.Limit = l
	}
	return q, nil
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}
