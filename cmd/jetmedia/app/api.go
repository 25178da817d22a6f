package app

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetmedia/jetmedia/egress/webhook"
	"github.com/jetmedia/jetmedia/egress/whep"
	"github.com/jetmedia/jetmedia/events"
	"github.com/jetmedia/jetmedia/ingress/signal"
	"github.com/jetmedia/jetmedia/ingress/signal/client/browser"
	"github.com/jetmedia/jetmedia/ingress/whip/demo"
	"github.com/jetmedia/jetmedia/pipeline/eventlog"
	"github.com/jetmedia/jetmedia/pipeline/metrics"
	"github.com/jetmedia/jetmedia/projections"
	"github.com/jetmedia/jetmedia/projections/clusterapi"
	"github.com/jetmedia/jetmedia/projections/historyapi"
	"github.com/jetmedia/jetmedia/projections/readmodels"
	"github.com/jetmedia/jetmedia/projections/roomsapi"
)

// registerHTTP adds the node's read API, operator endpoints and pages; each package serves
// what it owns, the node only hands it its parts.
func (n *Node) registerHTTP(mux *http.ServeMux) {
	roomsapi.API{Rooms: n.rooms, Authorize: n.authorizeAdmin, Logger: n.log}.Register(mux)
	historyapi.API{JS: n.js, Heads: n.appender, Authorize: n.authorizeAdmin, Logger: n.log, Snapshots: n.snaps, Rooms: n.rooms,
		WriteTimeout: n.cfg.HTTP.WriteTimeout}.Register(mux)
	readmodels.API{Models: n.rm, JS: n.js, Node: n.cfg.Name, Authorize: n.authorizeAdmin, Logger: n.log}.Register(mux)
	clusterapi.API{JS: n.js, Authorize: n.authorizeAdmin, Logger: n.log, Node: n.cfg.Name, Links: n.srv.Links,
		Identity: n.identityOf}.Register(mux)
	n.metrics.Register(mux, n.cfg.Name, n.ready)
	n.registerAuth(mux)
	n.registerSIP(mux)
	registerPages(mux)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, map[string]string{"status": "ok", "node": n.cfg.Name})
	})
}

func writeJSON(w http.ResponseWriter, v any) { roomsapi.WriteJSON(w, v) }

// congestionCounters are the bandwidth allocation's counters (zero with --bwe=false).
func (n *Node) congestionCounters() metrics.Congestion {
	c := n.congestion
	if c == nil {
		return metrics.Congestion{}
	}
	return metrics.Congestion{Pauses: c.Pauses.Load(), Resumes: c.Resumes.Load(),
		LayerDowns: c.LayerDowns.Load(), LayerUps: c.LayerUps.Load()}
}

// Sessions is the number of the node's live WebRTC sessions of transport ("": of every one).
func (n *Node) Sessions(transport string) int { return n.sessions.Len(transport) }

// metricSources tells the metrics registry where the node's figures are.
func (n *Node) metricSources() metrics.Sources {
	return metrics.Sources{
		Sessions: func() map[string]int {
			if n.sessions == nil {
				return nil
			}
			return map[string]int{
				events.TransportWHIP: n.sessions.Len(events.TransportWHIP),
				events.TransportWHEP: n.sessions.Len(events.TransportWHEP),
				signal.Transport:     n.sessions.Len(signal.Transport),
				events.TransportRTMP: n.sessions.Len(events.TransportRTMP),
				events.TransportSIP:  n.sessions.Len(events.TransportSIP),
			}
		},
		Ingress: func() metrics.Ingress {
			if n.whip == nil {
				return metrics.Ingress{}
			}
			return metrics.Ingress(n.whip.Stats())
		},
		RTMP: func() metrics.Ingress {
			if n.rtmp == nil {
				return metrics.Ingress{}
			}
			s := n.rtmp.Stats()
			return metrics.Ingress{PacketsIn: s.PacketsIn, BytesIn: s.BytesIn, DroppedPublish: s.Dropped}
		},
		Forwarding:    func() metrics.Forwarding { return metrics.Forwarding(n.hub.Stats()) },
		Congestion:    n.congestionCounters,
		Bus:           n.bus,
		Edge:          n.edge,
		Stages:        n.timings,
		NATS:          n.srv,
		ProjectionLag: n.ProjectionLag,
		RoomKeys:      func(ctx context.Context) (map[string][]byte, error) { return projections.Snapshot(ctx, n.rooms) },
	}
}

// ready reports whether the node can take sessions: not shutting down, JetStream answering,
// and the rooms projection caught up with the log to within projections.ReadyLag events (so
// WHEP sees what was published, at most a batch or two late).
func (n *Node) ready(ctx context.Context) error {
	if n.sessions == nil || n.sessions.Closing() {
		return fmt.Errorf("%w: shutting down", metrics.ErrNotReady)
	}
	if err := n.srv.WriteErr(); err != nil {
		return fmt.Errorf("%w: the event log cannot take writes: %v", metrics.ErrNotReady, err)
	}
	if _, err := n.js.AccountInfo(ctx); err != nil {
		return fmt.Errorf("%w: JetStream does not answer: %v", metrics.ErrNotReady, err)
	}
	lag, err := n.ProjectionLag(ctx)
	if err != nil {
		return fmt.Errorf("%w: %v", metrics.ErrNotReady, err)
	}
	return projectionReady(lag)
}

// projectionReady: the rooms projection is close enough to the log (projections.ReadyLag).
// Under a sustained append rate a projection that keeps pace is always a batch or two behind;
// zero would make a busy node unready for good.
func projectionReady(lag uint64) error {
	if lag > projections.ReadyLag {
		return fmt.Errorf("%w: rooms projection is %d events behind the log (ready within %d)",
			metrics.ErrNotReady, lag, projections.ReadyLag)
	}
	return nil
}

// startWebhooks delivers the log to the configured webhook endpoints (none: nothing runs) and
// adds their counters to the node's metrics.
func (n *Node) startWebhooks(ctx context.Context) error {
	if len(n.cfg.Webhooks.Endpoints) == 0 {
		return nil
	}
	cfg := n.cfg.Webhooks
	cfg.Logger = n.log
	cfg.Storage = n.cfg.Storage
	d, err := webhook.Start(ctx, n.js, cfg)
	if err != nil {
		return err
	}
	n.webhooks = d
	for _, ep := range cfg.Endpoints {
		n.log.Info("delivering events by webhook", "endpoint", ep.String(), "consumer", ep.Durable())
	}
	if n.metrics != nil {
		n.metrics.MustRegister(d.Collector())
	}
	return nil
}

// closeWebhooks stops delivery; events in flight are delivered again on the next start.
func (n *Node) closeWebhooks() {
	if n.webhooks != nil {
		n.webhooks.Close()
	}
}

// WaitReadModels waits until every read model has applied every stored event.
func (n *Node) WaitReadModels(ctx context.Context) error {
	if n.rm == nil {
		return nil
	}
	return n.rm.Wait(ctx)
}

// ReadModelsDB is the node's pebble database of read models (nil on a node without
// JetStream). Readers must not write to it.
func (n *Node) ReadModelsDB() *pebble.DB {
	if n.rm == nil {
		return nil
	}
	return n.rm.DB()
}

// catalog answers WHEP's "what does this room publish" from the rooms projection, so a viewer
// on any node sees what was published on any other, once the projection has caught up with
// the room's log (a publisher that just left is still in a lagging bucket: the churn soak
// bound viewers to such a publisher's tracks, which never delivered a packet).
type catalog struct {
	kv     jetstream.KeyValue
	js     jetstream.JetStream
	events atomic.Pointer[jetstream.Stream] // looked up at the first request that finds it
	// region is set on an edge: the region's catalog, over the edge's link (edgecatalog.go).
	region *regionCatalog
}

// catalogCatchUp bounds the wait for the rooms projection to reach the room's newest event.
const catalogCatchUp = 2 * time.Second

// room reads room's state once the projection holds the room's newest event (for up to
// catalogCatchUp), or, while the log's stream cannot be looked up, as the bucket has it.
func (c *catalog) room(ctx context.Context, room string) (projections.Room, error) {
	evs, err := c.eventsStream(ctx)
	if err != nil {
		return projections.LoadRoom(ctx, c.kv, room)
	}
	r, _, err := projections.LoadRoomCurrent(ctx, c.kv, evs, room, catalogCatchUp)
	return r, err
}

// eventsStream is the log's stream, looked up at the first call that finds it.
func (c *catalog) eventsStream(ctx context.Context) (jetstream.Stream, error) {
	if evs := c.events.Load(); evs != nil {
		return *evs, nil
	}
	s, err := c.js.Stream(ctx, eventlog.StreamEvents)
	if err != nil {
		return nil, fmt.Errorf("app: the log's stream: %w", err)
	}
	c.events.Store(&s)
	return s, nil
}

// Gone is whep.TrackChecker: the tracks of room the rooms bucket, caught up with the log, no
// longer holds (see projections.TracksGone); on an edge, of the tracks it played from the
// region's bucket, those the region's no longer holds (edgecatalog.go).
func (c *catalog) Gone(ctx context.Context, room string, tracks []string) ([]whep.GoneTrack, error) {
	evs, err := c.eventsStream(ctx)
	if err != nil {
		return nil, err
	}
	gone, err := projections.TracksGone(ctx, c.kv, evs, room, tracks, catalogCatchUp)
	if err != nil {
		return nil, err
	}
	if c.region == nil {
		return watchedGone(gone), nil
	}
	return c.region.gone(ctx, room, gone), nil
}

// Playing is whep.PlayingObserver: on an edge, the region's tracks nobody plays any more are
// forgotten (edgecatalog.go).
func (c *catalog) Playing(played map[string][]string) {
	if c.region != nil {
		c.region.playing(played, time.Now())
	}
}

// watchedGone marks tracks gone that the track-ends watch follows.
func watchedGone(tracks []string) []whep.GoneTrack {
	out := make([]whep.GoneTrack, len(tracks))
	for i, t := range tracks {
		out[i] = whep.GoneTrack{Track: t}
	}
	return out
}

// Published is whep.Catalog: on an edge, a room or peer its own bucket does not hold is looked
// up in the region's (edgecatalog.go).
func (c *catalog) Published(ctx context.Context, room, peer string) (string, []whep.TrackSpec, error) {
	publisher, specs, err := c.published(ctx, room, peer)
	if c.region != nil && (errors.Is(err, whep.ErrNoPublisher) || errors.Is(err, whep.ErrNoPeer)) {
		return c.region.published(ctx, room, peer, err)
	}
	return publisher, specs, err
}

func (c *catalog) published(ctx context.Context, room, peer string) (string, []whep.TrackSpec, error) {
	r, err := c.room(ctx, room)
	if err != nil {
		return "", nil, err
	}
	return publishedIn(r, peer)
}

// publishedIn is what room r publishes: peer's tracks, or with peer "" those of the latest
// peer to join that publishes something.
func publishedIn(r projections.Room, peer string) (string, []whep.TrackSpec, error) {
	if peer == "" {
		// The current publisher: the latest peer to join that publishes something.
		for _, id := range r.PeerIDs() {
			p := r.Peers[id]
			if hasTracks(r, id) && (peer == "" || p.JoinedAt.After(r.Peers[peer].JoinedAt)) {
				peer = id
			}
		}
		if peer == "" {
			return "", nil, whep.ErrNoPublisher
		}
	} else if _, ok := r.Peers[peer]; !ok {
		return "", nil, whep.ErrNoPeer
	}
	var specs []whep.TrackSpec
	for _, id := range r.TrackIDs() {
		t := r.Tracks[id]
		if t.Peer != peer {
			continue
		}
		specs = append(specs, whep.TrackSpec{Track: t.Track, Kind: t.Kind, Codec: t.Codec,
			ClockRate: t.ClockRate, Channels: t.Channels, Fmtp: t.FmtpLine, Since: t.PublishedAt, Layers: t.Layers})
	}
	if len(specs) == 0 {
		return "", nil, whep.ErrNoPublisher
	}
	return peer, specs, nil
}

func hasTracks(r projections.Room, peer string) bool {
	for _, t := range r.Tracks {
		if t.Peer == peer {
			return true
		}
	}
	return false
}

// registerPages serves the web pages and the browser SDK, each from the package it belongs to
// (the timeline page comes with historyapi).
func registerPages(mux *http.ServeMux) {
	demo.Register(mux)
	browser.Register(mux)
}
