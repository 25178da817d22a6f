package clusterapi

import (
	"context"
	"embed"
	"encoding/json"
	"io/fs"
	"log/slog"
	"net/http"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetmedia/jetmedia/pipeline/auth"
	"github.com/jetmedia/jetmedia/pipeline/natsnode"
	"github.com/jetmedia/jetmedia/pipeline/rtc"
	"github.com/jetmedia/jetmedia/projections/logtools"
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
}

// View is the reply of GET /v1/cluster: what `jetmedia cluster --json` prints, and the
// answering node's links to other servers.
type View struct {
	logtools.ClusterView
	Node  string          `json:"node"`
	Links []natsnode.Link `json:"links"`
}

// Register adds GET /v1/cluster (admin grant for every room: it names every node and its
// load) and the cluster page.
func (a API) Register(mux *http.ServeMux) {
	if a.Logger == nil {
		a.Logger = slog.New(slog.DiscardHandler)
	}
	if a.Now == nil {
		a.Now = time.Now
	}
	mux.HandleFunc("GET /v1/cluster", a.handleCluster)
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
