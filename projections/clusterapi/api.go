package clusterapi

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetmedia/jetmedia/pipeline/auth"
	"github.com/jetmedia/jetmedia/pipeline/natsnode"
	"github.com/jetmedia/jetmedia/pipeline/rtc"
	"github.com/jetmedia/jetmedia/projections/logtools"
	"github.com/jetmedia/jetmedia/projections/presence"
	"github.com/jetmedia/jetmedia/projections/roomsapi"
)

//go:embed web
var webFS embed.FS

// readTimeout bounds one read of the nodes bucket and the streams' info.
const readTimeout = 5 * time.Second

// API serves the cluster view.
type API struct {
	JS        jetstream.JetStream
	Authorize roomsapi.Authorizer
	Logger    *slog.Logger
	// Now is the clock lease ages are read against (time.Now when nil).
	Now func() time.Time
	// Node is the name of the node answering; Links its server's links (nil: none shown).
	Node  string
	Links func() ([]natsnode.Link, error)
	// Identity names who sent an authorized request (its token's identity), for the record
	// of a forgotten edge; nil or "": "admin via <node>".
	Identity func(r *http.Request) string
}

// View is the reply of GET /v1/cluster: what `jetmedia cluster --json` prints, and the
// answering node's links to other servers.
type View struct {
	logtools.ClusterView
	Node  string          `json:"node"`
	Links []natsnode.Link `json:"links"`
}

// Register adds GET /v1/cluster (admin grant for every room: it names every node and its
// load), POST /v1/cluster/nodes/{name}/forget (the same grant) and the cluster page.
func (a API) Register(mux *http.ServeMux) {
	if a.Logger == nil {
		a.Logger = slog.New(slog.DiscardHandler)
	}
	if a.Now == nil {
		a.Now = time.Now
	}
	mux.HandleFunc("GET /v1/cluster", a.handleCluster)
	mux.HandleFunc("POST /v1/cluster/nodes/{name}/forget", a.handleForget)
	web, err := fs.Sub(webFS, "web")
	if err != nil {
		panic(err) // the embedded directory exists
	}
	files := http.FileServerFS(web)
	mux.Handle("GET /cluster.html", files)
	mux.Handle("GET /cluster.js", files)
}

// handleCluster answers the nodes (lease, zone, role, load, lease age, lost) and the streams
// (replicas, leader, peers, messages) as JSON; 503 when JetStream does not answer in time.
func (a API) handleCluster(w http.ResponseWriter, r *http.Request) {
	if !a.Authorize(w, r, auth.AnyRoom) {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), readTimeout)
	defer cancel()
	cv, err := logtools.ReadCluster(ctx, a.JS, a.Now())
	if err != nil {
		rtc.WriteError(w, r, a.Logger, rtc.Errorf(http.StatusServiceUnavailable, "reading the cluster: %v", err))
		return
	}
	v := View{ClusterView: cv, Node: a.Node, Links: []natsnode.Link{}}
	if a.Links != nil {
		if v.Links, err = a.Links(); err != nil {
			rtc.WriteError(w, r, a.Logger, rtc.Errorf(http.StatusServiceUnavailable, "reading the links: %v", err))
			return
		}
		if v.Links == nil {
			v.Links = []natsnode.Link{}
		}
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	if err := json.NewEncoder(w).Encode(v); err != nil {
		a.Logger.Debug("cluster reply not written", "err", err)
	}
}

// forgetBody is the optional body of a forget: the edge's JetStream domain when it is not
// the default "edge-<name>".
type forgetBody struct {
	Domain string `json:"domain"`
}

// forgetTimeout bounds a forget: the edge's lease read, the record, the stream update, the
// ends' appends and the wait for the rooms bucket to show them. It is under the HTTP server's
// default write timeout (30 s), so the answer is written even when it runs out; every step
// is idempotent, so a forget cut short is finished by running it again.
const forgetTimeout = 25 * time.Second

// handleForget makes the region forget a dead edge (presence.Forget) and answers what it
// did: 404 for a node that is no edge of the region, 409 while the edge's lease holds.
func (a API) handleForget(w http.ResponseWriter, r *http.Request) {
	if !a.Authorize(w, r, auth.AnyRoom) {
		return
	}
	var body forgetBody
	if r.ContentLength != 0 {
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096)).Decode(&body); err != nil && !errors.Is(err, io.EOF) {
			rtc.WriteError(w, r, a.Logger, rtc.Errorf(http.StatusBadRequest, "forget: body: %v", err))
			return
		}
	}
	by := ""
	if a.Identity != nil {
		by = a.Identity(r)
	}
	if by == "" {
		by = "admin via " + a.Node
	}
	ctx, cancel := context.WithTimeout(r.Context(), forgetTimeout)
	defer cancel()
	res, err := presence.Forget(ctx, a.JS, presence.ForgetRequest{Node: r.PathValue("name"), Domain: body.Domain, By: by, Writer: a.Node})
	if err != nil {
		status := http.StatusServiceUnavailable
		switch {
		case errors.Is(err, presence.ErrNotEdge):
			status = http.StatusNotFound
		case errors.Is(err, presence.ErrEdgeLive):
			status = http.StatusConflict
		case errors.Is(err, presence.ErrBadName):
			status = http.StatusBadRequest
		}
		rtc.WriteError(w, r, a.Logger, rtc.Errorf(status, "forget %s: %v", r.PathValue("name"), err))
		return
	}
	a.Logger.Warn("edge forgotten", "edge", res.Node, "domain", res.Domain, "by", res.By, "already", res.Already,
		"source_removed", res.SourceRemoved, "sessions_ended", res.Ended, "rooms", res.Rooms)
	roomsapi.WriteJSON(w, res)
}
