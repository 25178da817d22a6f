package metrics

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/jetmedia/jetmedia/events"
	"github.com/jetmedia/jetmedia/pipeline/mediabus"
	"github.com/jetmedia/jetmedia/pipeline/natsnode"
	"github.com/jetmedia/jetmedia/pipeline/rtc"
	"github.com/jetmedia/jetmedia/pipeline/stagetime"
)

// ScrapeTimeout bounds what one scrape (or readiness check) may spend asking JetStream.
const ScrapeTimeout = 2 * time.Second

// Registry is a node's Prometheus registry. Most figures are read at scrape time from
// counters the components keep anyway (forward.Hub, whip.Handler, the registries, the NATS
// server, the rooms bucket), so the media path pays nothing for being observed. Only event
// appends are timed as they happen. The registry is the node's own: two nodes in one process
// (tests) do not share metrics.
type Registry struct {
	reg           *prometheus.Registry
	appendSeconds prometheus.Histogram
	appendErrors  prometheus.Counter
}

// Ingress are the counters of the WHIP ingress (whip.Stats, field for field).
type Ingress struct {
	PacketsIn, BytesIn uint64
	DroppedPublish     uint64
	PLIsSent           uint64
}

// Forwarding are the counters of the track forwarder (forward.Stats, field for field).
type Forwarding struct {
	Forwarded, Retransmitted, Dropped                          uint64
	RetransmittedRTX                                           uint64
	ForwardedBytes                                             uint64
	NACKs, NACKed                                              uint64
	Replayed                                                   uint64
	DroppedInvalid, DroppedWrite, DroppedOversize, DroppedSlow uint64
}

// Congestion are the counters of the viewers' bandwidth allocation (forward.Congestion).
type Congestion struct {
	Pauses, Resumes, LayerDowns, LayerUps uint64
}

// Sources are where a node's figures are read at scrape time. A nil source is left out.
type Sources struct {
	Sessions func() map[string]int // live WebRTC sessions by transport
	Ingress  func() Ingress
	// RTMP are the RTMP ingest's counters (nil: RTMP off); PLIsSent is not used.
	RTMP       func() Ingress
	Forwarding func() Forwarding
	// Congestion is the bandwidth allocation's counters (nil: --bwe=false).
	Congestion func() Congestion
	Bus        *mediabus.MediaBus
	Edge       *rtc.Edge
	// Stages are the forward path's stage timings (stagetime), exported as one histogram.
	Stages        *stagetime.Timings
	NATS          *natsnode.Server
	ProjectionLag func(context.Context) (uint64, error)
	// RoomKeys reads the rooms projection bucket (key → value, live keys only).
	RoomKeys func(context.Context) (map[string][]byte, error)
}

// New returns a registry that reads the node's figures from src.
func New(src Sources) *Registry {
	m := &Registry{
		reg: prometheus.NewRegistry(),
		appendSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "jetmedia_event_append_duration_seconds",
			Help: "Time to append a batch of events to the EVENTS stream (JetStream publish and ack, conflict retries included).",
			// 100 µs to 1 s: a local file-backed append is ~50 µs, a clustered one a few ms.
			Buckets: prometheus.ExponentialBucketsRange(100e-6, 1, 14),
		}),
		appendErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "jetmedia_event_append_errors_total",
			Help: "Event appends that failed (the session's events were not stored).",
		}),
	}
	m.reg.MustRegister(m.appendSeconds, m.appendErrors, nodeCollector{src},
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// MustRegister adds collectors of other components (webhook delivery) to the registry.
func (m *Registry) MustRegister(cs ...prometheus.Collector) { m.reg.MustRegister(cs...) }

// Handler serves /metrics. A collector that fails (JetStream not answering) leaves its
// metrics out rather than failing the whole scrape.
func (m *Registry) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

// Appender times appends; it stands between the session registries and eventlog.Appender.
func (m *Registry) Appender(a rtc.Appender) rtc.Appender { return timedAppender{a: a, m: m} }

type timedAppender struct {
	a rtc.Appender
	m *Registry
}

func (t timedAppender) Append(ctx context.Context, evs ...events.Envelope) (uint64, error) {
	start := time.Now()
	seq, err := t.a.Append(ctx, evs...)
	t.m.appendSeconds.Observe(time.Since(start).Seconds())
	if err != nil {
		t.m.appendErrors.Inc()
	}
	return seq, err
}

var (
	descSessions = prometheus.NewDesc("jetmedia_sessions",
		"Live WebRTC sessions on this node by transport.", []string{"transport"}, nil)
	descRooms = prometheus.NewDesc("jetmedia_rooms",
		"Rooms with at least one peer, from the rooms projection (whole system).", nil, nil)
	descPeers = prometheus.NewDesc("jetmedia_peers",
		"Peers in rooms, from the rooms projection (whole system).", nil, nil)
	descTracks = prometheus.NewDesc("jetmedia_tracks",
		"Published tracks, from the rooms projection (whole system).", nil, nil)
	descSubs = prometheus.NewDesc("jetmedia_subscriptions",
		"Track subscriptions, from the rooms projection (whole system).", nil, nil)
	descInPackets = prometheus.NewDesc("jetmedia_ingress_rtp_packets_total",
		"RTP packets received from publishers on this node.", []string{"transport"}, nil)
	descInBytes = prometheus.NewDesc("jetmedia_ingress_rtp_bytes_total",
		"Bytes of RTP packets (headers included) received from publishers on this node.", []string{"transport"}, nil)
	descOutPackets = prometheus.NewDesc("jetmedia_egress_rtp_packets_total",
		"RTP packets forwarded to viewers on this node (retransmissions not included).", nil, nil)
	descOutBytes = prometheus.NewDesc("jetmedia_egress_rtp_bytes_total",
		"Bytes of RTP packets (headers included) forwarded to viewers on this node.", nil, nil)
	descRetransmitted = prometheus.NewDesc("jetmedia_egress_rtp_retransmitted_packets_total",
		"RTP packets resent to viewers from the node's packet cache on NACK.", nil, nil)
	descRetransmittedRTX = prometheus.NewDesc("jetmedia_egress_rtp_retransmitted_rtx_packets_total",
		"Retransmitted packets sent on the viewer's RTX stream (RFC 4588), part of jetmedia_egress_rtp_retransmitted_packets_total.", nil, nil)
	descReplayed = prometheus.NewDesc("jetmedia_egress_rtp_replayed_packets_total",
		"RTP packets sent to new video viewers from the track's cache (its newest key frame and what followed), part of the forwarded ones.", nil, nil)
	descNACKs = prometheus.NewDesc("jetmedia_rtcp_nacks_received_total",
		"RTCP NACK reports received from viewers.", nil, nil)
	descNACKed = prometheus.NewDesc("jetmedia_rtcp_nack_requested_packets_total",
		"RTP packets viewers asked to be resent (sequence numbers in their NACKs).", nil, nil)
	descPLIs = prometheus.NewDesc("jetmedia_rtcp_plis_sent_total",
		"Keyframe requests (PLI) sent to publishers, after throttling.", nil, nil)
	descDropped = prometheus.NewDesc("jetmedia_rtp_dropped_packets_total",
		"RTP packets not delivered, by reason: invalid (not RTP), oversize, write_error (viewer transport), "+
			"slow_consumer (the node's track subscription overflowed), publish_error (ingress could not publish to NATS).",
		[]string{"reason"}, nil)
	descBus = prometheus.NewDesc("jetmedia_media_bus_messages_total",
		"RTP packets this node published on, and received from, media subjects; repair_asked: packets missing from other nodes' tracks asked for again, repaired: packets resent to other nodes for theirs.", []string{"direction"}, nil)
	descLag = prometheus.NewDesc("jetmedia_projection_lag_events",
		"Events in the log that the rooms projection has not applied yet.", nil, nil)
	descSlow = prometheus.NewDesc("jetmedia_nats_slow_consumers_total",
		"Connections the embedded NATS server found to be slow consumers (it drops their messages).", nil, nil)
	descEdgeSent = prometheus.NewDesc("jetmedia_edge_datagrams_sent_total",
		"UDP datagrams the WebRTC port sent, by path: batched (a fan-out's, queued for a sender goroutine) or direct (written at once).",
		[]string{"path"}, nil)
	descEdgeErrors = prometheus.NewDesc("jetmedia_edge_send_errors_total",
		"Batched UDP datagrams the kernel refused to send.", nil, nil)
	descEdgeSegments = prometheus.NewDesc("jetmedia_edge_gso_segments_total",
		"Batched UDP datagrams sent as segments of one message with others to the same destination (UDP GSO).", nil, nil)
	descStages = prometheus.NewDesc("jetmedia_forward_stage_seconds",
		"Time RTP spends in each stage of the node's forward path: ingest (the edge socket's read to the track's fan-out: pion's demultiplexing, SRTP, interceptors and goroutine hand-offs), fanout (the fan-out's start until a lane has written the packet to its viewers), queue (the oldest packet of a batched send's wait for its sender), send (the send's system calls).",
		[]string{"stage"}, nil)
	descPauses = prometheus.NewDesc("jetmedia_congestion_video_pauses_total",
		"Viewers' video tracks paused because their bandwidth estimate carried not even the lowest layer (resumed: given a layer again).",
		[]string{"change"}, nil)
	descLayerChanges = prometheus.NewDesc("jetmedia_congestion_layer_changes_total",
		"Simulcast layer changes the bandwidth allocation asked of viewers' tracks, by direction.", []string{"direction"}, nil)
	descPacedPackets = prometheus.NewDesc("jetmedia_pacing_packets_total",
		"Packets to viewers that waited in their connection's pacing queue (queued) and those of them dropped past its bounds (dropped; never audio).", []string{"result"}, nil)
	descPacedBytes = prometheus.NewDesc("jetmedia_pacing_bytes_total",
		"Bytes of jetmedia_pacing_packets_total.", []string{"result"}, nil)
	descPacingDelay = prometheus.NewDesc("jetmedia_pacing_queue_delay_seconds",
		"How long the packets that waited in a viewer connection's pacing queue waited before they left.", nil, nil)
	descFastIngest = prometheus.NewDesc("jetmedia_fast_ingest_packets_total",
		"Publishers' RTP packets the WebRTC port's reader decrypted itself (--fast-ingest): sent on, refused (bad tag, replay, malformed) or dropped because the stream's sender was too far behind (full).", []string{"result"}, nil)
	descFastEgress = prometheus.NewDesc("jetmedia_fast_egress_packets_total",
		"Viewers' RTP packets the node protected and queued on the WebRTC port itself (--fast-egress): sent, or failed (not protected, not sent).", []string{"result"}, nil)
	descEdgeGSO = prometheus.NewDesc("jetmedia_edge_gso",
		"1 while the WebRTC port sends with UDP GSO (asked for, offered by the kernel and not refused by it).", nil, nil)
)

// nodeCollector reads a node's figures at scrape time.
type nodeCollector struct{ src Sources }

func (c nodeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descSessions, descRooms, descPeers, descTracks, descSubs,
		descInPackets, descInBytes, descOutPackets, descOutBytes, descRetransmitted, descRetransmittedRTX, descReplayed, descNACKs, descNACKed,
		descPLIs, descDropped, descBus, descLag, descSlow, descEdgeSent, descEdgeErrors, descEdgeSegments, descEdgeGSO, descFastIngest, descFastEgress, descStages,
		descPauses, descLayerChanges, descPacedPackets, descPacedBytes, descPacingDelay} {
		ch <- d
	}
}

func (c nodeCollector) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	c.collectMedia(gauge, counter)
	if c.src.Stages != nil {
		for _, m := range stageMetrics(c.src.Stages) {
			ch <- m
		}
	}
	if c.src.Edge != nil {
		ch <- pacingDelay(c.src.Edge.PacingStats())
	}
	if c.src.ProjectionLag == nil || c.src.RoomKeys == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), ScrapeTimeout)
	defer cancel()
	if lag, err := c.src.ProjectionLag(ctx); err != nil {
		ch <- prometheus.NewInvalidMetric(descLag, err)
	} else {
		gauge(descLag, float64(lag))
	}
	snap, err := c.src.RoomKeys(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(descRooms, err)
		return
	}
	rc := countRooms(snap)
	gauge(descRooms, float64(rc.Rooms))
	gauge(descPeers, float64(rc.Peers))
	gauge(descTracks, float64(rc.Tracks))
	gauge(descSubs, float64(rc.Subscriptions))
}

type (
	gaugeFunc   func(d *prometheus.Desc, v float64, labels ...string)
	counterFunc func(d *prometheus.Desc, v uint64, labels ...string)
)

// collectMedia reports the counters the media path keeps.
func (c nodeCollector) collectMedia(gauge gaugeFunc, counter counterFunc) {
	if c.src.Sessions != nil {
		for transport, n := range c.src.Sessions() {
			gauge(descSessions, float64(n), transport)
		}
	}
	var dropPublish uint64
	if c.src.Ingress != nil {
		s := c.src.Ingress()
		counter(descInPackets, s.PacketsIn, "whip")
		counter(descInBytes, s.BytesIn, "whip")
		counter(descPLIs, s.PLIsSent)
		dropPublish = s.DroppedPublish
	}
	if c.src.RTMP != nil {
		s := c.src.RTMP()
		counter(descInPackets, s.PacketsIn, "rtmp")
		counter(descInBytes, s.BytesIn, "rtmp")
		dropPublish += s.DroppedPublish
	}
	if c.src.Forwarding != nil {
		f := c.src.Forwarding()
		counter(descOutPackets, f.Forwarded)
		counter(descOutBytes, f.ForwardedBytes)
		counter(descRetransmitted, f.Retransmitted)
		counter(descRetransmittedRTX, f.RetransmittedRTX)
		counter(descReplayed, f.Replayed)
		counter(descNACKs, f.NACKs)
		counter(descNACKed, f.NACKed)
		counter(descDropped, f.DroppedInvalid, "invalid")
		counter(descDropped, f.DroppedOversize, "oversize")
		counter(descDropped, f.DroppedWrite, "write_error")
		counter(descDropped, f.DroppedSlow, "slow_consumer")
		counter(descDropped, dropPublish, "publish_error")
	}
	if c.src.Congestion != nil {
		s := c.src.Congestion()
		counter(descPauses, s.Pauses, "paused")
		counter(descPauses, s.Resumes, "resumed")
		counter(descLayerChanges, s.LayerDowns, "down")
		counter(descLayerChanges, s.LayerUps, "up")
	}
	if c.src.Bus != nil {
		b := c.src.Bus.Stats()
		counter(descBus, b.Sent, "published")
		counter(descBus, b.Received, "received")
		counter(descBus, b.RepairsAsked, "repair_asked")
		counter(descBus, b.Repaired, "repaired")
	}
	if c.src.Edge != nil {
		e := c.src.Edge.WriteStats()
		counter(descEdgeSent, e.Packets, "batched")
		counter(descEdgeSent, e.Direct, "direct")
		counter(descEdgeErrors, e.SendErrors)
		counter(descEdgeSegments, e.Coalesced)
		gso := 0.0
		if e.GSO {
			gso = 1
		}
		gauge(descEdgeGSO, gso)
		f := c.src.Edge.FastIngestStats()
		counter(descFastIngest, f.Packets, "sent")
		counter(descFastIngest, f.Refused, "refused")
		counter(descFastIngest, f.Full, "full")
		fe := c.src.Edge.FastEgressStats()
		counter(descFastEgress, fe.Packets, "sent")
		counter(descFastEgress, fe.Failed, "failed")
		p := c.src.Edge.PacingStats()
		counter(descPacedPackets, p.Queued, "queued")
		counter(descPacedPackets, p.Dropped, "dropped")
		counter(descPacedBytes, p.QueuedBytes, "queued")
		counter(descPacedBytes, p.DroppedBytes, "dropped")
	}
	if c.src.NATS != nil {
		counter(descSlow, uint64(max(c.src.NATS.NATS().NumSlowConsumers(), 0)))
	}
}

// pacingDelay is the pacing queues' delay histogram, in Prometheus' cumulative form.
func pacingDelay(p rtc.PacingStats) prometheus.Metric {
	buckets := make(map[float64]uint64, len(rtc.PacingDelayBounds))
	var cum uint64
	for i, b := range rtc.PacingDelayBounds {
		cum += p.DelayBuckets[i]
		buckets[b.Seconds()] = cum
	}
	return prometheus.MustNewConstHistogram(descPacingDelay, cum+p.DelayBuckets[len(rtc.PacingDelayBounds)], p.DelaySum.Seconds(), buckets)
}

// stageMetrics are the forward path's stage histograms, in Prometheus' cumulative form.
func stageMetrics(t *stagetime.Timings) []prometheus.Metric {
	out := make([]prometheus.Metric, 0, len(stagetime.Stages))
	for _, st := range stagetime.Stages {
		s := t.Snapshot(st)
		buckets := make(map[float64]uint64, stagetime.Buckets-1)
		var cum uint64
		for i := range stagetime.Buckets - 1 { // the last bucket is +Inf: Count
			cum += s.Buckets[i]
			buckets[stagetime.UpperBound(i).Seconds()] = cum
		}
		out = append(out, prometheus.MustNewConstHistogram(descStages, s.Count, s.Sum.Seconds(), buckets, st.String()))
	}
	return out
}

// roomCounts are the sizes of the rooms projection.
type roomCounts struct {
	Rooms, Peers, Tracks, Subscriptions int
}

// countRooms counts the live keys of the rooms bucket by kind (<room>.peer.<peer>,
// <room>.track.<track>, <room>.sub.<peer>.<track>); a room counts while it has a peer, as in
// GET /v1/rooms. Values are not decoded: the key says everything counted here.
func countRooms(snap map[string][]byte) roomCounts {
	var c roomCounts
	withPeers := map[string]bool{}
	for k := range snap {
		room, rest, ok := strings.Cut(k, ".")
		if !ok {
			continue
		}
		kind, _, _ := strings.Cut(rest, ".")
		switch kind {
		case "peer":
			c.Peers++
			withPeers[room] = true
		case "track":
			c.Tracks++
		case "sub":
			c.Subscriptions++
		}
	}
	c.Rooms = len(withPeers)
	return c
}

// ErrNotReady says why /readyz answers 503.
var ErrNotReady = errors.New("not ready")

// Register adds the operator endpoints: GET /metrics (Prometheus) and GET /readyz,
// which answers 503 with ready's reason, or 200.
func (m *Registry) Register(mux *http.ServeMux, node string, ready func(context.Context) error) {
	mux.Handle("GET /metrics", m.Handler())
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), ScrapeTimeout)
		defer cancel()
		if err := ready(ctx); err != nil {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, err)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]string{"status": "ready", "node": node})
	})
}
