package loadgen

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/jetmedia/jetmedia/tests/rtcclient"
)

// Modes of a run.
const (
	// ModeWHIP: WHIP publishers, each in a room of its own, and WHEP subscribers of each.
	ModeWHIP = "whip"
	// ModeRooms: rooms of SDK peers, some publishing and the others subscribing to all of
	// them (rooms.go).
	ModeRooms = "rooms"
)

// Viewers of a ModeWHIP run.
const (
	// ViewerLite: a receive-only WebRTC client built from pion's protocol libraries, whose
	// viewers share UDP sockets read in batches by one goroutine per socket (lite.go). It
	// costs a few µs of CPU per packet, so on the server's machine it takes little from the
	// server it measures.
	ViewerLite = "lite"
	// ViewerPion: a pion PeerConnection per viewer, as a Go application would receive.
	ViewerPion = "pion"
)

// Config is one load run. Defaults() gives one 2 Mbit/s publisher with one subscriber for 10 s.
type Config struct {
	// URL is the server's base URL; the run talks to nothing else.
	URL string
	// Mode is ModeWHIP (default) or ModeRooms.
	Mode string
	// Rooms is the number of rooms in ModeRooms (ModeWHIP has one per publisher).
	Rooms int
	// Publishers is the number of WHIP publishers, each in a room of its own; in ModeRooms
	// the number of publishing peers in each room.
	Publishers int
	// Subscribers is the number of WHEP subscribers per publisher; in ModeRooms the number of
	// subscribing peers in each room, each receiving every publisher there.
	Subscribers int
	// Bitrate (bits/s) and FPS of each publisher's video; MaxPayload bounds an RTP payload.
	Bitrate, FPS, MaxPayload int
	// Audio adds a 50 packets/s audio track to each publisher.
	Audio bool
	// Simulcast sends each WHIP publisher's video in three layers (q, h, f at 10 %, 30 % and
	// 100 % of Bitrate, as many packets a frame each); the server forwards each viewer one.
	Simulcast bool
	// Viewer is how ModeWHIP subscribers receive: ViewerLite (default) or ViewerPion.
	// ModeRooms subscribers are always Go SDK peers.
	Viewer string
	// ViewerTWCC makes ModeWHIP subscribers send transport-wide congestion control
	// feedback every 100 ms, as browsers do (pion viewers: rtcclient.TWCCFeedback; lite
	// viewers their own), so the server estimates their bandwidth from it.
	ViewerTWCC bool
	// Ramp spreads the subscribers' joins over this long; Duration is the hold after it.
	Ramp, Duration time.Duration
	// Room prefixes the rooms' names (<room>-<run id>-<n>).
	Room string
	// ServerPID, when set, is the server's process on this machine: its CPU and memory are
	// read from /proc during the hold.
	ServerPID int
	// MetricsURL, when set instead, is the server's Prometheus endpoint (http://host:port/metrics):
	// its CPU and memory are read from the process collector's process_cpu_seconds_total and
	// process_resident_memory_bytes, so the server may run on another machine.
	MetricsURL string
	// Progress, when set, receives a status line every second (with \r: for a terminal).
	Progress io.Writer
	// Drain is how long subscribers keep receiving after the publishers stop.
	Drain time.Duration
	// Token, when set, is sent as "Authorization: Bearer <token>" with every request: it
	// must grant publish and subscribe in every room of the run (room "*"). Without it each
	// client asks the server's dev-mode GET /dev/token for one of its own, and sends none
	// when the server has no such endpoint.
	Token string
}

// Defaults returns a small run that works against a default `jetmedia serve`.
func Defaults() Config {
	return Config{
		URL: "http://127.0.0.1:8080", Mode: ModeWHIP, Rooms: 1, Publishers: 1, Subscribers: 1,
		Bitrate: 2_000_000, FPS: 30, MaxPayload: 1200, Audio: true, Viewer: ViewerLite,
		Duration: 10 * time.Second, Room: "load", Drain: 500 * time.Millisecond,
	}
}

// Validate reports every problem of the config at once.
func (c Config) Validate() error {
	var errs []error
	if !httpURL(c.URL) {
		errs = append(errs, fmt.Errorf("url %q: want http(s)://host:port", c.URL))
	}
	errs = append(errs, c.validateShape()...)
	if c.Bitrate < 8_000 || c.FPS < 1 || c.FPS > 240 {
		errs = append(errs, fmt.Errorf("bitrate %d, fps %d: want at least 8000 bit/s and 1-240 fps", c.Bitrate, c.FPS))
	}
	if c.MaxPayload < probeSize || c.MaxPayload > 1400 {
		errs = append(errs, fmt.Errorf("max payload %d: want %d-1400", c.MaxPayload, probeSize))
	}
	if c.Duration <= 0 || c.Ramp < 0 || c.Drain < 0 {
		errs = append(errs, errors.New("duration must be positive, ramp and drain not negative"))
	}
	errs = append(errs, c.validateServerStats()...)
	if c.Room == "" || strings.ContainsAny(c.Room, "./ ") {
		errs = append(errs, fmt.Errorf("room prefix %q: use letters, digits, - and _", c.Room))
	}
	return errors.Join(errs...)
}

// httpURL reports whether s is an absolute http(s) URL with a host.
func httpURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != ""
}

// validateShape checks the mode, rooms, viewers and peer counts.
func (c Config) validateShape() []error {
	var errs []error
	switch {
	case c.Mode != ModeWHIP && c.Mode != ModeRooms:
		errs = append(errs, fmt.Errorf("mode %q: want %s or %s", c.Mode, ModeWHIP, ModeRooms))
	case c.Mode == ModeRooms && c.Rooms < 1:
		errs = append(errs, fmt.Errorf("rooms %d: want at least 1", c.Rooms))
	case c.Mode == ModeWHIP && c.Rooms != 1:
		errs = append(errs, fmt.Errorf("rooms %d: only mode %s has rooms of many peers (whip: one room per publisher)", c.Rooms, ModeRooms))
	}
	if c.Viewer != ViewerLite && c.Viewer != ViewerPion {
		errs = append(errs, fmt.Errorf("viewer %q: want %s or %s", c.Viewer, ViewerLite, ViewerPion))
	}
	if c.Simulcast && c.Mode != ModeWHIP {
		errs = append(errs, fmt.Errorf("simulcast: only mode %s publishes in simulcast", ModeWHIP))
	}
	if c.ViewerTWCC && c.Mode != ModeWHIP {
		errs = append(errs, fmt.Errorf("viewer twcc: only mode %s viewers send transport-wide feedback", ModeWHIP))
	}
	if c.Publishers < 1 || c.Subscribers < 0 {
		errs = append(errs, fmt.Errorf("publishers %d, subscribers %d: want at least 1 and 0", c.Publishers, c.Subscribers))
	}
	return errs
}

// validateServerStats checks where the server's CPU and memory come from: a pid or a metrics
// URL, not both.
func (c Config) validateServerStats() []error {
	var errs []error
	if c.MetricsURL != "" {
		if !httpURL(c.MetricsURL) {
			errs = append(errs, fmt.Errorf("metrics url %q: want http(s)://host:port/metrics", c.MetricsURL))
		}
		if c.ServerPID > 0 {
			errs = append(errs, errors.New("server pid and metrics url: give one of them"))
		}
	}
	if c.ServerPID < 0 {
		errs = append(errs, fmt.Errorf("server pid %d: want a positive process id", c.ServerPID))
	}
	return errs
}

// Report is what one run measured. Durations are in milliseconds.
type Report struct {
	URL  string `json:"url"`
	Mode string `json:"mode"`
	// Viewer is how the subscribers received: lite or pion (ModeWHIP), sdk (ModeRooms).
	Viewer string `json:"viewer"`
	// Simulcast: the publishers sent three video layers.
	Simulcast bool `json:"simulcast,omitempty"`
	// ViewerTWCC: the viewers sent transport-wide feedback.
	ViewerTWCC bool `json:"viewer_twcc,omitempty"`
	// Rooms is the number of rooms (in ModeWHIP one per publisher); Publishers counts them
	// all. Every publisher has SubscribersPerPublisher subscribers: of its own in ModeWHIP,
	// the room's in ModeRooms.
	Rooms                   int     `json:"rooms"`
	Publishers              int     `json:"publishers"`
	SubscribersPerPublisher int     `json:"subscribers_per_publisher"`
	BitrateBPS              int     `json:"bitrate_bps"`
	FPS                     int     `json:"fps"`
	RampSeconds             float64 `json:"ramp_seconds"`
	HoldSeconds             float64 `json:"hold_seconds"`
	ElapsedSeconds          float64 `json:"elapsed_seconds"`

	Sent     Traffic `json:"sent"`
	Received Traffic `json:"received"`
	// ExpectedPackets is what subscribers should have received (from each one's first packet
	// to the last sent); LostPackets those that never arrived; Duplicates arrived twice.
	ExpectedPackets uint64  `json:"expected_packets"`
	LostPackets     uint64  `json:"lost_packets"`
	LossPercent     float64 `json:"loss_percent"`
	Duplicates      uint64  `json:"duplicate_packets"`

	// Latency is end to end, during the hold: from the publisher's send to the packet's
	// arrival at the subscriber's socket (the kernel's receive timestamp, where the viewer
	// has one: lite viewers on Linux; else when the subscriber read it). ReadLatency is to
	// when the subscriber's reader had the packet, so it adds the tool's own queueing and
	// scheduling on the receiving side; with pion viewers the two are the same.
	Latency     Quantiles `json:"latency_ms"`
	ReadLatency Quantiles `json:"read_latency_ms"`
	// Join is from a subscriber's POST (ModeRooms: its SDK Join call) to its first video
	// packet (of any publisher).
	Join Quantiles `json:"join_ms"`
	// FirstKeyframe is from a subscriber's POST to its first packet of a video key frame (its
	// first decodable frame begins), KeyframeAfterConnect from when its ICE and DTLS were done
	// (ModeWHIP) to that packet: what a node's cached key frame or its key-frame request saves.
	FirstKeyframe        Quantiles `json:"first_keyframe_ms"`
	KeyframeAfterConnect Quantiles `json:"first_keyframe_after_connect_ms"`

	SubscribersJoined  int `json:"subscribers_joined"`
	SubscribersFailed  int `json:"subscribers_failed"`
	SubscribersNoMedia int `json:"subscribers_without_media"`
	// SubscribersMissingTracks got media, but not from every track of every publisher they
	// subscribe to.
	SubscribersMissingTracks int    `json:"subscribers_missing_tracks"`
	FirstError               string `json:"first_error,omitempty"`
	PLIsToPublishers         uint64 `json:"plis_to_publishers"`

	// ServerStages are the server's forward-path stages during the hold (ingest, fanout,
	// queue, send), read from its /metrics when it has them (jetmedia_forward_stage_seconds).
	ServerStages map[string]StageQuantiles `json:"server_stages_ms,omitempty"`
	// Server is the server's process during the hold (with ServerPID); Tool is this one's.
	Server *Process `json:"server,omitempty"`
	Tool   *Process `json:"tool,omitempty"`
	// ReceivedPPS is packets per second the subscribers received during the hold, and
	// PacketsPerServerCore that divided by the server's CPU in cores.
	ReceivedPPS          float64 `json:"received_pps"`
	PacketsPerServerCore float64 `json:"packets_per_server_core_second,omitempty"`
}

// Traffic counts RTP packets and bytes (headers included).
type Traffic struct {
	Packets uint64 `json:"packets"`
	Bytes   uint64 `json:"bytes"`
}

// Quantiles of a distribution, in milliseconds.
type Quantiles struct {
	Count uint64  `json:"count"`
	P50   float64 `json:"p50"`
	P95   float64 `json:"p95"`
	P99   float64 `json:"p99"`
	Max   float64 `json:"max"`
}

// Process is a process's CPU (percent of one core, averaged over the hold) and memory, read
// from /proc (PID) or from the server's metrics (MetricsURL).
type Process struct {
	PID        int     `json:"pid,omitempty"`
	MetricsURL string  `json:"metrics_url,omitempty"`
	CPUPercent float64 `json:"cpu_percent"`
	RSSBytes   int64   `json:"rss_bytes"`
	PeakRSS    int64   `json:"peak_rss_bytes"`
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func histQuantiles(h *Histogram) Quantiles {
	return Quantiles{Count: h.Count(), P50: ms(h.Quantile(0.5)), P95: ms(h.Quantile(0.95)),
		P99: ms(h.Quantile(0.99)), Max: ms(h.Quantile(1))}
}

func durQuantiles(ds []time.Duration) Quantiles {
	return Quantiles{Count: uint64(len(ds)), P50: ms(percentile(ds, 0.5)), P95: ms(percentile(ds, 0.95)),
		P99: ms(percentile(ds, 0.99)), Max: ms(percentile(ds, 1))}
}

// viewer is a subscriber of either mode: what it received of each publisher it subscribes to.
type viewer interface {
	receptions() []*reception
	// joinStarted is when it began to join (its first video packet ends the join).
	joinStarted() time.Time
	close(hc *http.Client)
}

// joinTime is from a viewer's start of joining to its first video packet of any publisher,
// or false with none yet.
func joinTime(v viewer) (time.Duration, bool) {
	var first int64
	for _, rc := range v.receptions() {
		if f := rc.firstVideo.Load(); f != 0 && (first == 0 || f < first) {
			first = f
		}
	}
	if first == 0 {
		return 0, false
	}
	return time.Unix(0, first).Sub(v.joinStarted()), true
}

// keyframeTimes are from a viewer's start of joining, and from its connection (when known),
// to its first key-frame packet of any publisher; false with none yet.
func keyframeTimes(v viewer) (fromJoin, fromConnect time.Duration, connected, ok bool) {
	var first, conn int64
	for _, rc := range v.receptions() {
		if f := rc.firstKey.Load(); f != 0 && (first == 0 || f < first) {
			first, conn = f, rc.connected.Load()
		}
	}
	if first == 0 {
		return 0, 0, false, false
	}
	fromJoin = time.Unix(0, first).Sub(v.joinStarted())
	if conn != 0 {
		return fromJoin, time.Duration(first - conn), true, true
	}
	return fromJoin, 0, false, true
}

// run is the state of one Run.
type run struct {
	noDevTokens atomic.Bool // the server has no GET /dev/token

	cfg      Config
	loopback bool        // the server is on this machine's loopback
	api      *webrtc.API // WHIP publishers'
	viewAPI  *webrtc.API // subscribers' with ViewerPion
	lite     *liteHub    // subscribers' with ViewerLite
	hc       *http.Client
	id       string
	pubs     []*publisher // in ModeRooms room by room, Publishers to a room

	mu       sync.Mutex
	subs     []viewer
	failed   int
	firstErr error
	lat      latencies
}

// Run drives the server for cfg.Ramp + cfg.Duration, then stops every client and reports.
// Cancelling ctx ends the run early; the report then covers what ran.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	u, _ := url.Parse(cfg.URL)
	api, err := newAPI(isLoopback(u), false, false)
	if err != nil {
		return nil, err
	}
	viewAPI, err := newAPI(isLoopback(u), true, cfg.ViewerTWCC)
	if err != nil {
		return nil, err
	}
	r := &run{cfg: cfg, loopback: isLoopback(u), api: api, viewAPI: viewAPI, id: strings.ToLower(rand.Text()[:6]),
		hc: &http.Client{Timeout: 20 * time.Second}}
	if cfg.MetricsURL != "" {
		// A wrong URL is an error now, not a report without the server's figures later.
		if _, err := scrapeProcess(ctx, r.hc, cfg.MetricsURL); err != nil {
			return nil, err
		}
	}
	if cfg.Mode == ModeWHIP && cfg.Viewer == ViewerLite {
		if r.lite, err = newLiteHub(cfg.URL, &r.lat); err != nil {
			return nil, err
		}
		r.lite.twcc = cfg.ViewerTWCC
	}
	started := time.Now()

	sendCtx, stopSending := context.WithCancel(context.Background())
	defer func() {
		stopSending() // the send loops end before their publishers close
		r.closeAll()
	}()

	// Publishers first, each sending at once; then wait until the server lists their tracks
	// so every subscriber gets all of them.
	publish, join := r.publishWHIP, r.joinWHIP
	if cfg.Mode == ModeRooms {
		publish, join = r.publishRooms, r.joinRoom
	}
	if err := publish(ctx, sendCtx); err != nil {
		return nil, err
	}

	stopProgress := r.progress(started)
	defer stopProgress()

	// Ramp: subscribers join spread over the ramp, round-robin over the publishers (rooms).
	total := r.viewers()
	var joins sync.WaitGroup
	rampStart := time.Now()
	for i := range total {
		if !sleepUntil(ctx, rampStart.Add(spread(i, total, cfg.Ramp))) {
			break
		}
		joins.Go(func() {
			v, err := join(ctx, i)
			r.mu.Lock()
			defer r.mu.Unlock()
			if err != nil {
				r.failed++
				if r.firstErr == nil {
					r.firstErr = err
				}
				return
			}
			r.subs = append(r.subs, v)
		})
	}
	joins.Wait()
	// The hold: steady state, measured.
	sampler := newSampler(r.serverSampler())
	stagesBefore, stagesErr := scrapeStages(ctx, r.hc, cfg.URL) // a server without them: none
	holdStart := time.Now()
	r.lat.measuring.Store(true)
	recvBefore := r.received()
	sleepUntil(ctx, holdStart.Add(cfg.Duration))
	r.lat.measuring.Store(false)
	holdEnd := time.Now()
	recvAfter := r.received()
	server, tool := sampler.stop()
	var stages map[string]StageQuantiles
	if stagesErr == nil {
		if after, err := scrapeStages(ctx, r.hc, cfg.URL); err == nil {
			stages = stageDelta(stagesBefore, after)
		}
	}

	// Stop sending, let the last packets arrive, then account.
	stopSending()
	time.Sleep(cfg.Drain)
	rep := r.report(started, holdEnd.Sub(holdStart))
	rep.ReceivedPPS = float64(recvAfter-recvBefore) / holdEnd.Sub(holdStart).Seconds()
	if server != nil {
		server.PID, server.MetricsURL = cfg.ServerPID, cfg.MetricsURL
	}
	rep.Server, rep.Tool = server, tool
	rep.ServerStages = stages
	if server != nil && server.CPUPercent > 0 {
		rep.PacketsPerServerCore = rep.ReceivedPPS / (server.CPUPercent / 100)
	}
	return rep, nil
}

// viewers is how many subscribers the run has.
func (r *run) viewers() int {
	if r.cfg.Mode == ModeRooms {
		return r.cfg.Rooms * r.cfg.Subscribers
	}
	return r.cfg.Publishers * r.cfg.Subscribers
}

// publishWHIP starts the WHIP publishers, each in a room of its own, and waits until the
// server lists their tracks.
func (r *run) publishWHIP(ctx, sendCtx context.Context) error {
	c := r.cfg
	for i := range c.Publishers {
		room := fmt.Sprintf("%s-%s-%d", c.Room, r.id, i)
		tok, err := r.token(ctx, room)
		if err != nil {
			return err
		}
		p, err := startPublisher(ctx, r.api, r.hc, c.URL, room, tok, c.Audio, c.Simulcast)
		if err != nil {
			return fmt.Errorf("publisher %d: %w", i, err)
		}
		r.pubs = append(r.pubs, p)
		p.wg.Go(func() { p.send(sendCtx, c.Bitrate, c.FPS, c.MaxPayload) })
	}
	want := 1
	if c.Audio {
		want = 2
	}
	for _, p := range r.pubs {
		if err := r.waitTracks(ctx, p.room, want); err != nil {
			return err
		}
	}
	return nil
}

// joinWHIP is the i-th subscriber of the ramp: round-robin over the publishers.
func (r *run) joinWHIP(ctx context.Context, i int) (viewer, error) {
	pub := r.pubs[i%len(r.pubs)]
	tok, err := r.token(ctx, pub.room)
	if err != nil {
		return nil, err
	}
	if r.lite != nil {
		v, err := r.lite.startLiteViewer(ctx, r.hc, r.cfg.URL, pub, tok, r.cfg.Audio)
		if err != nil {
			return nil, err
		}
		return v, nil
	}
	s, err := startSubscriber(ctx, r.viewAPI, r.hc, r.cfg.URL, pub, tok, r.cfg.Audio, &r.lat)
	if err != nil {
		return nil, err
	}
	return s, nil
}

// waitTracks polls the server's room API until the room lists n tracks. A server without the
// API (404 on every room) is taken as ready: subscribers then retry on 409 instead.
func (r *run) waitTracks(ctx context.Context, room string, n int) error {
	deadline := time.Now().Add(15 * time.Second)
	for {
		got, err := r.roomTracks(ctx, room)
		if err == nil && got >= n {
			return nil
		}
		var he *rtcclient.HTTPError
		if errors.As(err, &he) && he.Status == http.StatusNotFound && time.Now().After(deadline.Add(-10*time.Second)) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("room %s: %d of %d tracks published after 15 s (%v)", room, got, n, err)
		}
		if !sleepUntil(ctx, time.Now().Add(50*time.Millisecond)) {
			return ctx.Err()
		}
	}
}

func (r *run) roomTracks(ctx context.Context, room string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(r.cfg.URL, "/")+"/v1/rooms/"+room, nil)
	if err != nil {
		return 0, err
	}
	rtcclient.SetToken(req, r.cfg.Token)
	resp, err := r.hc.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return 0, &rtcclient.HTTPError{Status: resp.StatusCode, Body: string(body)}
	}
	var v struct {
		Tracks []json.RawMessage `json:"tracks"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		return 0, err
	}
	return len(v.Tracks), nil
}

func (r *run) snapshotSubs() []viewer {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]viewer(nil), r.subs...)
}

func (r *run) received() uint64 {
	var n uint64
	for _, s := range r.snapshotSubs() {
		for _, rc := range s.receptions() {
			n += rc.video.got.packets.Load() + rc.audio.got.packets.Load()
		}
	}
	return n
}

func (r *run) sent() Traffic {
	var t Traffic
	for _, p := range r.pubs {
		t.Packets += p.videoSent.packets.Load() + p.audioSent.packets.Load()
		t.Bytes += p.videoSent.bytes.Load() + p.audioSent.bytes.Load()
	}
	return t
}

// report accounts every subscriber against what its publisher sent.
func (r *run) report(started time.Time, hold time.Duration) *Report {
	c := r.cfg
	rep := &Report{URL: c.URL, Mode: c.Mode, Viewer: c.Viewer, ViewerTWCC: c.ViewerTWCC, Simulcast: c.Simulcast, Rooms: c.Rooms, Publishers: len(r.pubs), SubscribersPerPublisher: c.Subscribers,
		BitrateBPS: c.Bitrate, FPS: c.FPS, RampSeconds: c.Ramp.Seconds(), HoldSeconds: hold.Seconds(),
		ElapsedSeconds: time.Since(started).Seconds(), Sent: r.sent()}
	if c.Mode == ModeWHIP {
		rep.Rooms = len(r.pubs)
	} else {
		rep.Viewer = "sdk"
	}
	var joins, keys, keysAfterConnect []time.Duration
	subs := r.snapshotSubs()
	for _, s := range subs {
		complete := true
		for _, rc := range s.receptions() {
			rep.Received.Packets += rc.video.got.packets.Load() + rc.audio.got.packets.Load()
			rep.Received.Bytes += rc.video.got.bytes.Load() + rc.audio.got.bytes.Load()
			rc.mu.Lock()
			for _, tr := range []struct {
				rec  *trackRecv
				next uint32
			}{{&rc.video, rc.pub.videoSeq.Load()}, {&rc.audio, rc.pub.audioSeq.Load()}} {
				if tr.next == 0 {
					continue
				}
				if !tr.rec.seq.started {
					complete = false
				}
				exp, lost := tr.rec.seq.loss(tr.next - 1)
				rep.ExpectedPackets += exp
				rep.LostPackets += lost
				rep.Duplicates += tr.rec.seq.dups
			}
			rc.mu.Unlock()
		}
		if fromJoin, fromConn, connected, ok := keyframeTimes(s); ok {
			keys = append(keys, fromJoin)
			if connected {
				keysAfterConnect = append(keysAfterConnect, fromConn)
			}
		}
		if d, ok := joinTime(s); !ok {
			rep.SubscribersNoMedia++
		} else {
			joins = append(joins, d)
			if !complete {
				rep.SubscribersMissingTracks++
			}
		}
	}
	rep.LossPercent = lossPercent(rep.ExpectedPackets, rep.LostPackets)
	rep.Latency = histQuantiles(&r.lat.arrival)
	rep.ReadLatency = histQuantiles(&r.lat.read)
	rep.Join = durQuantiles(joins)
	rep.FirstKeyframe = durQuantiles(keys)
	rep.KeyframeAfterConnect = durQuantiles(keysAfterConnect)
	r.mu.Lock()
	rep.SubscribersJoined, rep.SubscribersFailed = len(r.subs), r.failed
	if r.firstErr != nil {
		rep.FirstError = r.firstErr.Error()
	}
	r.mu.Unlock()
	for _, p := range r.pubs {
		rep.PLIsToPublishers += p.plis.Load()
	}
	return rep
}

// closeAll ends every session, subscribers first, in parallel.
func (r *run) closeAll() {
	var wg sync.WaitGroup
	for _, s := range r.snapshotSubs() {
		wg.Go(func() { s.close(r.hc) })
	}
	wg.Wait()
	if r.lite != nil {
		r.lite.close() // the lite viewers' sockets and readers
	}
	for _, p := range r.pubs {
		wg.Go(func() { p.close(r.hc) })
	}
	wg.Wait()
}

// progress prints a status line every second until the returned stop is called.
func (r *run) progress(started time.Time) (stop func()) {
	if r.cfg.Progress == nil {
		return func() {}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		var lastRecv, lastSent uint64
		for {
			select {
			case <-done:
				fmt.Fprintln(r.cfg.Progress)
				return
			case <-t.C:
			}
			recv, sent := r.received(), r.sent().Packets
			r.mu.Lock()
			joined, failed := len(r.subs), r.failed
			r.mu.Unlock()
			phase := "ramp"
			if r.lat.measuring.Load() {
				phase = "hold"
			}
			fmt.Fprintf(r.cfg.Progress, "\r%5.1fs %s  subs %d/%d (failed %d)  sent %d pkt/s  recv %d pkt/s  latency p99 %.2f ms   ",
				time.Since(started).Seconds(), phase, joined, r.viewers(), failed,
				sent-lastSent, recv-lastRecv, ms(r.lat.arrival.Quantile(0.99)))
			lastRecv, lastSent = recv, sent
		}
	})
	return func() {
		close(done)
		wg.Wait()
	}
}

// sampleFunc reads one process's CPU time and memory.
type sampleFunc func(now time.Time) (procSample, error)

// serverSampler is how the run reads the server's process: /proc with a PID, a scrape with a
// metrics URL, nothing (nil) with neither.
func (r *run) serverSampler() sampleFunc {
	switch {
	case r.cfg.ServerPID > 0:
		pid := strconv.Itoa(r.cfg.ServerPID)
		return func(now time.Time) (procSample, error) { return readProc(pid, now) }
	case r.cfg.MetricsURL != "":
		return func(time.Time) (procSample, error) {
			return scrapeProcess(context.Background(), r.hc, r.cfg.MetricsURL)
		}
	}
	return nil
}

// sampler reads the server's (and this process's) CPU and memory every second.
type sampler struct {
	src   [2]sampleFunc // the server's (nil: not sampled) and this process's
	done  chan struct{}
	wg    sync.WaitGroup
	mu    sync.Mutex
	first [2]procSample
	last  [2]procSample
	ok    [2]bool
	peak  [2]int64
}

func newSampler(server sampleFunc) *sampler {
	self := func(now time.Time) (procSample, error) { return readProc("self", now) }
	s := &sampler{done: make(chan struct{}), src: [2]sampleFunc{server, self}}
	s.sample()
	s.wg.Go(func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-s.done:
				return
			case <-t.C:
				s.sample()
			}
		}
	})
	return s
}

func (s *sampler) sample() {
	for i, src := range s.src {
		if src == nil {
			continue
		}
		p, err := src(time.Now())
		if err != nil {
			continue
		}
		s.mu.Lock()
		if !s.ok[i] {
			s.first[i], s.ok[i] = p, true
		}
		s.last[i] = p
		s.peak[i] = max(s.peak[i], p.RSS)
		s.mu.Unlock()
	}
}

// stop takes a last sample and returns the server's and this process's figures (nil when not
// sampled).
func (s *sampler) stop() (server, tool *Process) {
	close(s.done)
	s.wg.Wait()
	s.sample()
	out := [2]*Process{}
	for i := range out {
		if !s.ok[i] {
			continue
		}
		out[i] = &Process{CPUPercent: cpuPercent(s.first[i], s.last[i]), RSSBytes: s.last[i].RSS, PeakRSS: s.peak[i]}
	}
	return out[0], out[1]
}

// token is the bearer token of one client in room: the configured one, or one the server's
// dev mode mints, or none.
func (r *run) token(ctx context.Context, room string) (string, error) {
	if r.cfg.Token != "" || r.noDevTokens.Load() {
		return r.cfg.Token, nil
	}
	q := url.Values{"room": {room}, "grants": {"publish,subscribe"}, "format": {"text"}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(r.cfg.URL, "/")+"/dev/token?"+q.Encode(), nil)
	if err != nil {
		return "", err
	}
	resp, err := r.hc.Do(req)
	if err != nil {
		return "", fmt.Errorf("dev token: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 16<<10))
	switch {
	case resp.StatusCode == http.StatusOK && strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain"):
		return strings.TrimSpace(string(body)), nil
	case resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusOK:
		// No dev mode (404, or the demo page's file server): run without tokens; a server
		// that needs them says so with 401 on the first POST.
		r.noDevTokens.Store(true)
		return "", nil
	}
	return "", fmt.Errorf("dev token: %w", &rtcclient.HTTPError{Status: resp.StatusCode, Body: string(body)})
}
