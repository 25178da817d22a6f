package webhook_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/egress/webhook"
	"github.com/jetmedia/jetmedia/events"
	"github.com/jetmedia/jetmedia/pipeline/eventlog"
	"github.com/jetmedia/jetmedia/pipeline/natsnode"
)

const secret = "whsec_c2VjcmV0LWtleS1mb3ItdGVzdHM="

var key = []byte("secret-key-for-tests")

type bed struct {
	js  jetstream.JetStream
	app *eventlog.Appender
}

// newBed runs a real embedded NATS server with JetStream and declares the event stream.
func newBed(t *testing.T) bed {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv, err := natsnode.StartServer(ctx, natsnode.ServerConfig{Name: "webhook-test", JetStream: true, StoreDir: t.TempDir()})
	require.NoError(t, err)
	t.Cleanup(srv.Shutdown)
	nc, err := srv.Connect("test")
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	require.NoError(t, eventlog.Declare(ctx, js, eventlog.StorageConfig{}))
	return bed{js: js, app: eventlog.NewAppender(js, "n1")}
}

// appendN appends n events to room, alternating joins and leaves.
func (b bed) append(t *testing.T, room string, i int) {
	t.Helper()
	peer := fmt.Sprintf("p%d", i/2)
	var p events.Payload = events.PeerJoined{Peer: peer, Transport: "whip", Role: "publisher", Node: "n1"}
	if i%2 == 1 {
		p = events.PeerLeft{Peer: peer, Reason: "closed"}
	}
	e, err := events.New(events.Meta{Room: room, Actor: peer, Node: "n1", Time: time.Now()}, p)
	require.NoError(t, err)
	_, err = b.app.Append(context.Background(), e)
	require.NoError(t, err)
}

// logOf is every stored event id of room in log order, with its type.
func (b bed) logOf(t *testing.T, room string) (ids, types []string) {
	t.Helper()
	err := eventlog.Read(context.Background(), b.js, eventlog.ReadOptions{Filter: eventlog.RoomEventsFilter(room)}, func(e events.Envelope) error {
		ids = append(ids, e.ID)
		types = append(types, e.Type)
		return nil
	})
	require.NoError(t, err)
	return ids, types
}

type delivery struct {
	id, room, typ string
	seq           uint64
	at            time.Time
}

// receiver is the test's webhook endpoint. behave decides each request's fate (status, or
// 0 to hang past the client's timeout); accepted requests are recorded.
type receiver struct {
	t      *testing.T
	behave func(d delivery) int

	mu       sync.Mutex
	accepted []delivery
	requests atomic.Int64
	badSig   atomic.Int64
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rc.requests.Add(1)
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return
	}
	if r.Header.Get("Content-Type") != "application/json" ||
		webhook.Verify(key, r.Header.Get(webhook.HeaderID), r.Header.Get(webhook.HeaderTimestamp),
			r.Header.Get(webhook.HeaderSignature), body, time.Now(), 5*time.Minute) != nil {
		rc.badSig.Add(1)
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	var e events.Envelope
	if err := json.Unmarshal(body, &e); err != nil || e.ID != r.Header.Get(webhook.HeaderID) {
		rc.badSig.Add(1)
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	seq, _ := strconv.ParseUint(r.Header.Get(webhook.HeaderSeq), 10, 64)
	d := delivery{id: e.ID, room: e.Room, typ: e.Type, seq: seq, at: time.Now()}
	status := http.StatusOK
	if rc.behave != nil {
		status = rc.behave(d)
	}
	if status == 0 {
		<-r.Context().Done() // the client gave up: not delivered
		return
	}
	if status/100 == 2 {
		rc.mu.Lock()
		rc.accepted = append(rc.accepted, d)
		rc.mu.Unlock()
	}
	w.WriteHeader(status)
}

// firstByRoom returns each room's accepted event ids, duplicates removed (first kept).
func (rc *receiver) firstByRoom() (map[string][]string, int) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	seen := map[string]bool{}
	out := map[string][]string{}
	dups := 0
	for _, d := range rc.accepted {
		if seen[d.id] {
			dups++
			continue
		}
		seen[d.id] = true
		out[d.room] = append(out[d.room], d.id)
	}
	return out, dups
}

func testConfig(url string, types ...string) webhook.Config {
	cfg := webhook.Defaults()
	cfg.Endpoints = []webhook.Endpoint{{URL: url, Secret: secret, Types: types}}
	cfg.InitialBackoff = 5 * time.Millisecond
	cfg.MaxBackoff = 50 * time.Millisecond
	cfg.Timeout = 200 * time.Millisecond
	cfg.Lanes = 4
	if os.Getenv("JETMEDIA_TEST_LOG") == "1" { // quiet unless asked
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return cfg
}

// listen serves h on addr (127.0.0.1:0 for a new port), retrying while the port is not free.
func listen(t *testing.T, addr string, h http.Handler) *httptest.Server {
	t.Helper()
	var ln net.Listener
	var err error
	for range 100 {
		if ln, err = net.Listen("tcp", addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	require.NoError(t, err)
	s := httptest.NewUnstartedServer(h)
	s.Listener = ln
	s.Start()
	return s
}

func start(t *testing.T, js jetstream.JetStream, cfg webhook.Config) *webhook.Deliverer {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	d, err := webhook.Start(ctx, js, cfg)
	require.NoError(t, err)
	return d
}

// A receiver that fails with 500 for a while, hangs on some requests, and is restarted
// twice (and the delivering node restarted once) gets every event, per room in log order.
func TestEveryEventArrivesInOrderThroughFailures(t *testing.T) {
	b := newBed(t)
	var failing atomic.Bool
	var n atomic.Int64
	rc := &receiver{t: t, behave: func(d delivery) int {
		k := n.Add(1)
		switch {
		case failing.Load():
			return http.StatusInternalServerError
		case k%7 == 0:
			return 0 // hang: the client times out
		case k%11 == 0:
			return http.StatusTooManyRequests
		case k%13 == 0:
			return http.StatusBadRequest
		}
		return http.StatusOK
	}}
	srv := listen(t, "127.0.0.1:0", rc)
	addr := srv.Listener.Addr().String()
	cfg := testConfig(srv.URL)
	cfg.MaxAttempts = 1000 // nothing parks in this test
	d := start(t, b.js, cfg)

	rooms := []string{"r1", "r2", "r3", "r4", "r5", "r6"}
	const perRoom = 40
	for i := range perRoom {
		for _, r := range rooms {
			b.append(t, r, i)
		}
		switch i {
		case 5:
			failing.Store(true)
		case 10:
			failing.Store(false)
		case 15:
			srv.Close() // receiver down: connection refused
		case 20:
			srv = listen(t, addr, rc) // back on the same port
		case 24:
			failing.Store(true) // so that events are in flight when the node stops
		case 25:
			d.Close() // the delivering node stops with events taken and not acknowledged
			d = start(t, b.js, cfg)
		case 27:
			failing.Store(false)
		case 30:
			srv.CloseClientConnections()
		}
	}
	defer srv.Close()
	defer d.Close()

	want := map[string][]string{}
	total := 0
	for _, r := range rooms {
		want[r], _ = b.logOf(t, r)
		total += len(want[r])
	}
	require.Eventually(t, func() bool {
		got, _ := rc.firstByRoom()
		c := 0
		for _, ids := range got {
			c += len(ids)
		}
		return c >= total
	}, 30*time.Second, 20*time.Millisecond)
	got, dups := rc.firstByRoom()
	st := d.Stats()
	require.Len(t, st, 1)
	require.Positive(t, st[0].Delivered)
	require.Positive(t, st[0].FailedAttempts)
	require.Zero(t, st[0].Parked)
	for _, r := range rooms {
		require.Equal(t, want[r], got[r], "room %s: every event, in log order", r)
	}
	require.Zero(t, rc.badSig.Load(), "every request is signed correctly")
	t.Logf("%d events, %d requests, %d duplicates", total, rc.requests.Load(), dups)
}

func TestTypeFilter(t *testing.T) {
	b := newBed(t)
	rc := &receiver{t: t}
	srv := listen(t, "127.0.0.1:0", rc)
	defer srv.Close()
	d := start(t, b.js, testConfig(srv.URL, "peer.left")) // any version
	defer d.Close()
	for i := range 10 {
		b.append(t, "f", i)
	}
	ids, types := b.logOf(t, "f")
	var want []string
	for i, ty := range types {
		if ty == events.TypePeerLeft {
			want = append(want, ids[i])
		}
	}
	require.Len(t, want, 5)
	require.Eventually(t, func() bool { got, _ := rc.firstByRoom(); return len(got["f"]) == 5 }, 10*time.Second, 10*time.Millisecond)
	time.Sleep(100 * time.Millisecond)
	got, _ := rc.firstByRoom()
	require.Equal(t, want, got["f"])
	for _, a := range rc.accepted {
		require.Equal(t, events.TypePeerLeft, a.typ)
	}
}

// Events of a room the receiver keeps refusing are parked after MaxAttempts while other rooms
// flow; redrive delivers them in order and empties the parked stream. A refusal (400) parks
// with the breaker on; a 503 parks the same way with the breaker off (the behaviour before
// the breaker). With the breaker on, a 503 for every event of the only busy room looks like
// an outage and holds the events instead: TestBreakerHoldsThroughOutage.
func TestParkAndRedrive(t *testing.T) {
	for _, tc := range []struct {
		name    string
		status  int
		breaker webhook.Breaker
	}{
		{"refused", http.StatusBadRequest, webhook.Breaker{}},
		{"unavailable, breaker off", http.StatusServiceUnavailable, webhook.Breaker{Off: true}},
	} {
		t.Run(tc.name, func(t *testing.T) { testParkAndRedrive(t, tc.status, tc.breaker) })
	}
}

func testParkAndRedrive(t *testing.T, status int, breaker webhook.Breaker) {
	b := newBed(t)
	var healed atomic.Bool
	rc := &receiver{t: t, behave: func(d delivery) int {
		if d.room == "bad" && !healed.Load() {
			return status
		}
		return http.StatusOK
	}}
	srv := listen(t, "127.0.0.1:0", rc)
	defer srv.Close()
	cfg := testConfig(srv.URL)
	cfg.Endpoints[0].Breaker = breaker
	cfg.MaxAttempts = 3
	cfg.Timeout = 2 * time.Second // the healthy room must not park on a loaded machine
	d := start(t, b.js, cfg)
	defer d.Close()
	for i := range 6 {
		b.append(t, "bad", i)
		b.append(t, "good", i)
	}
	badIDs, _ := b.logOf(t, "bad")
	goodIDs, _ := b.logOf(t, "good")
	require.Eventually(t, func() bool { got, _ := rc.firstByRoom(); return len(got["good"]) == len(goodIDs) }, 10*time.Second, 10*time.Millisecond)

	var parked []webhook.Parked
	require.Eventually(t, func() bool {
		parked = parked[:0]
		require.NoError(t, webhook.ListParked(context.Background(), b.js, "", func(p webhook.Parked) error {
			parked = append(parked, p)
			return nil
		}))
		return len(parked) == len(badIDs)
	}, 10*time.Second, 20*time.Millisecond)
	require.Eventually(t, func() bool {
		st := d.Stats()[0]
		return st.Parked == int64(len(badIDs)) && st.Delivered == int64(len(goodIDs)) && st.Queued == 0
	}, 5*time.Second, 10*time.Millisecond)
	require.Zero(t, d.Stats()[0].CircuitOpens)
	for i, p := range parked {
		require.Equal(t, badIDs[i], p.EventID, "parked in log order")
		require.Equal(t, "bad", p.Room)
		require.Equal(t, srv.URL, p.URL)
		require.Equal(t, 3, p.Attempts)
		require.Contains(t, p.Error, strconv.Itoa(status))
	}

	// A redrive while the receiver still fails keeps everything parked.
	res, err := webhook.Redrive(context.Background(), b.js, cfg, "")
	require.NoError(t, err)
	require.Equal(t, webhook.RedriveResult{Failed: 1, Held: len(badIDs) - 1}, res)

	healed.Store(true)
	res, err = webhook.Redrive(context.Background(), b.js, cfg, srv.URL)
	require.NoError(t, err)
	require.Equal(t, webhook.RedriveResult{Delivered: len(badIDs)}, res)
	got, _ := rc.firstByRoom()
	require.Equal(t, badIDs, got["bad"])
	n := 0
	require.NoError(t, webhook.ListParked(context.Background(), b.js, "", func(webhook.Parked) error { n++; return nil }))
	require.Zero(t, n)
}

// Delivery latency from the start of the append to the receiver's handler, with a healthy
// receiver. JETMEDIA_WEBHOOK_LATENCY_N sets the number of events (default 500).
func TestDeliveryLatency(t *testing.T) {
	if testing.Short() {
		t.Skip("latency measurement")
	}
	b := newBed(t)
	rc := &receiver{t: t}
	srv := listen(t, "127.0.0.1:0", rc)
	defer srv.Close()
	cfg := testConfig(srv.URL)
	cfg.Lanes = 16
	d := start(t, b.js, cfg)
	defer d.Close()
	n := 500
	if v, err := strconv.Atoi(os.Getenv("JETMEDIA_WEBHOOK_LATENCY_N")); err == nil {
		n = v
	}
	sent := map[string]time.Time{}
	for i := range n {
		room := fmt.Sprintf("lat%d", i%10)
		peer := fmt.Sprintf("p%d", i)
		e, err := events.New(events.Meta{Room: room, Actor: peer, Node: "n1", Time: time.Now()},
			events.PeerJoined{Peer: peer, Transport: "whip", Role: "publisher", Node: "n1"})
		require.NoError(t, err)
		sent[e.ID] = time.Now()
		_, err = b.app.Append(context.Background(), e)
		require.NoError(t, err)
		time.Sleep(2 * time.Millisecond) // a steady stream, not one burst
	}
	require.Eventually(t, func() bool {
		got, _ := rc.firstByRoom()
		c := 0
		for _, ids := range got {
			c += len(ids)
		}
		return c >= n+10 // plus each room's room.created
	}, 30*time.Second, 10*time.Millisecond)
	rc.mu.Lock()
	var lat []time.Duration
	for _, a := range rc.accepted {
		if s, ok := sent[a.id]; ok {
			lat = append(lat, a.at.Sub(s))
			delete(sent, a.id) // a duplicate (a request that timed out after it was handled) counts once
		}
	}
	rc.mu.Unlock()
	require.Len(t, lat, n)
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	p := func(q float64) time.Duration { return lat[min(len(lat)-1, int(q*float64(len(lat))))] }
	t.Logf("webhook latency over %d events: p50 %v p90 %v p99 %v max %v", n, p(0.50), p(0.90), p(0.99), lat[len(lat)-1])
	_ = slices.Max(lat)
}

func TestSignVerify(t *testing.T) {
	body := []byte(`{"id":"x"}`)
	sig := webhook.Sign(key, "msg_1", 1700000000, body)
	now := time.Unix(1700000000, 0)
	require.NoError(t, webhook.Verify(key, "msg_1", "1700000000", "v1,bogus "+sig, body, now, time.Minute))
	require.ErrorIs(t, webhook.Verify(key, "msg_1", "1700000000", sig, []byte(`{"id":"y"}`), now, time.Minute), webhook.ErrSignature)
	require.ErrorIs(t, webhook.Verify(key, "msg_2", "1700000000", sig, body, now, time.Minute), webhook.ErrSignature)
	require.ErrorIs(t, webhook.Verify(key, "msg_1", "1700000000", sig, body, now.Add(time.Hour), time.Minute), webhook.ErrSignature)
	require.ErrorIs(t, webhook.Verify([]byte("other"), "msg_1", "1700000000", sig, body, now, time.Minute), webhook.ErrSignature)
	// The Standard Webhooks specification's own example.
	k, _ := base64Decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	require.Equal(t, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
		webhook.Sign(k, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, []byte(`{"test": 2432232314}`)))
}

func TestParseEndpoint(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want webhook.Endpoint
		err  bool
	}{
		{in: "https://example.com/hook", want: webhook.Endpoint{URL: "https://example.com/hook"}},
		{in: "url=https://e.com/h,types=peer.joined.v1|peer.left,secret=whsec_c2VjcmV0",
			want: webhook.Endpoint{URL: "https://e.com/h", Types: []string{"peer.joined.v1", "peer.left"}, Secret: "whsec_c2VjcmV0"}},
		{in: "secret=s,url=http://127.0.0.1:9/x", want: webhook.Endpoint{URL: "http://127.0.0.1:9/x", Secret: "s"}},
		{in: "url=http://e.com/h,breaker=off", want: webhook.Endpoint{URL: "http://e.com/h", Breaker: webhook.Breaker{Off: true}}},
		{in: "breaker=3/30s,url=http://e.com/h", want: webhook.Endpoint{URL: "http://e.com/h", Breaker: webhook.Breaker{Failures: 3, Window: 30 * time.Second}}},
		{in: "url=http://e.com/h,breaker=never", err: true},
		{in: "url=ftp://e.com", err: true},
		{in: "url=https://e.com,colour=red", err: true},
		{in: "url=https://e.com,secret=whsec_!!!", err: true},
		{in: "types=peer.left.v1", err: true},
	} {
		got, err := webhook.ParseEndpoint(tc.in)
		if tc.err {
			require.Error(t, err, tc.in)
			continue
		}
		require.NoError(t, err, tc.in)
		require.Equal(t, tc.want, got)
	}
	e := webhook.Endpoint{Types: []string{"peer.joined", "track.published.v1"}}
	require.True(t, e.Wants("peer.joined.v1"))
	require.True(t, e.Wants("peer.joined.v2"))
	require.True(t, e.Wants("track.published.v1"))
	require.False(t, e.Wants("track.published.v2"))
	require.False(t, e.Wants("peer.left.v1"))
	require.True(t, webhook.Endpoint{}.Wants("anything.v1"))
	shown := webhook.Endpoint{URL: "https://user:hunter2@e.com/h", Secret: "s3cret", Breaker: webhook.Breaker{Failures: 7}}.String()
	require.Equal(t, "https://user:xxxxx@e.com/h breaker=7/1m0s", shown, "no password, no secret")
}

func base64Decode(s string) ([]byte, error) { return base64.StdEncoding.DecodeString(s) }

// Retry-After of a 429 is heeded (within MaxBackoff).
func TestRetryAfter(t *testing.T) {
	b := newBed(t)
	var n atomic.Int64
	var times []time.Time
	var mu sync.Mutex
	rc := &receiver{t: t, behave: func(d delivery) int {
		mu.Lock()
		times = append(times, time.Now())
		mu.Unlock()
		if n.Add(1) == 1 {
			return http.StatusTooManyRequests
		}
		return http.StatusOK
	}}
	srv := listen(t, "127.0.0.1:0", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "1")
		rc.ServeHTTP(w, r)
	}))
	defer srv.Close()
	cfg := testConfig(srv.URL)
	cfg.MaxBackoff = 5 * time.Second
	// A 429 answered after the client gave up is a timeout, retried without Retry-After: on a
	// loaded machine (a -race run of the package) the test's usual 200 ms was not enough.
	cfg.Timeout = 5 * time.Second
	d := start(t, b.js, cfg)
	defer d.Close()
	b.append(t, "ra", 0)
	require.Eventually(t, func() bool { got, _ := rc.firstByRoom(); return len(got["ra"]) == 2 }, 10*time.Second, 10*time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	require.GreaterOrEqual(t, times[1].Sub(times[0]), 900*time.Millisecond)
}

// parkedCount is the number of events in WEBHOOKS_PARKED.
func (b bed) parkedCount(t *testing.T) int {
	t.Helper()
	n := 0
	require.NoError(t, webhook.ListParked(context.Background(), b.js, "", func(webhook.Parked) error { n++; return nil }))
	return n
}

// A receiver down (connection refused) for much longer than an event's attempts last: the
// circuit opens, nothing is parked and no lane sends but the probe; once the receiver is back
// every event arrives, each room in log order, and the circuit closes. With the breaker off the
// same outage parks events (the behaviour before the breaker).
func TestBreakerHoldsThroughOutage(t *testing.T) {
	for _, off := range []bool{false, true} {
		t.Run(fmt.Sprintf("off=%v", off), func(t *testing.T) { testOutage(t, off) })
	}
}

func testOutage(t *testing.T, off bool) {
	b := newBed(t)
	rc := &receiver{t: t}
	srv := listen(t, "127.0.0.1:0", rc)
	addr := srv.Listener.Addr().String()
	cfg := testConfig(srv.URL)
	cfg.Endpoints[0].Breaker.Off = off
	// Without the breaker an event parks after 3 attempts, within about 10 ms of backoff: the
	// outage below lasts a hundred times longer.
	cfg.MaxAttempts = 3
	cfg.InitialBackoff = 2 * time.Millisecond
	cfg.MaxBackoff = 10 * time.Millisecond
	cfg.Timeout = 2 * time.Second // a loaded machine must not turn a healthy answer into a failure
	cfg.Lanes = 8
	d := start(t, b.js, cfg)
	defer d.Close()

	rooms := 20
	perRoom := 40
	if v, err := strconv.Atoi(os.Getenv("JETMEDIA_WEBHOOK_BACKLOG_ROOMS")); err == nil && v > 0 {
		rooms = v
	}
	room := func(r int) string { return fmt.Sprintf("o%02d", r) }
	for r := range rooms { // a first event per room while the receiver is up
		b.append(t, room(r), 0)
	}
	require.Eventually(t, func() bool { return d.Stats()[0].Delivered >= int64(2*rooms) }, 20*time.Second, 10*time.Millisecond)

	srv.Close() // the receiver goes down
	downAt := time.Now()
	for i := 1; i < perRoom; i++ {
		for r := range rooms {
			b.append(t, room(r), i)
		}
	}
	if off {
		require.Eventually(t, func() bool { return b.parkedCount(t) > 0 }, 20*time.Second, 10*time.Millisecond,
			"without the breaker an outage parks events")
		require.Zero(t, d.Stats()[0].CircuitOpens)
		return
	}
	require.Eventually(t, func() bool { return d.Stats()[0].CircuitOpen }, 20*time.Second, 5*time.Millisecond)
	// Stay down until many retry windows have passed (and at least a second).
	time.Sleep(max(time.Second, 100*time.Duration(cfg.MaxAttempts)*cfg.MaxBackoff-time.Since(downAt)))
	st := d.Stats()[0]
	require.True(t, st.CircuitOpen, "still down: still open")
	require.Zero(t, st.Parked)
	require.Zero(t, b.parkedCount(t))
	failedWhileDown := st.FailedAttempts
	delivered := st.Delivered

	backlog := int64(rooms*perRoom+rooms) - delivered // plus each room.created
	srv = listen(t, addr, rc)
	defer srv.Close()
	backAt := time.Now()
	require.Eventually(t, func() bool { return d.Stats()[0].Delivered >= int64(rooms*perRoom+rooms) }, 60*time.Second, 2*time.Millisecond)
	drained := time.Since(backAt)
	st = d.Stats()[0]
	require.False(t, st.CircuitOpen)
	require.GreaterOrEqual(t, st.CircuitOpens, int64(1))
	require.Zero(t, st.Parked)
	require.Zero(t, b.parkedCount(t))
	got, dups := rc.firstByRoom()
	for r := range rooms {
		want, _ := b.logOf(t, room(r))
		require.Equal(t, want, got[room(r)], "room %s: every event, in log order", room(r))
	}
	require.Zero(t, rc.badSig.Load())
	t.Logf("outage %v: circuit opened %d times, %d failed requests while down (the first of each lane, then one probe at a time); "+
		"backlog of %d events drained in %v after the receiver came back, next probe included (%d duplicates)",
		backAt.Sub(downAt).Round(time.Millisecond), st.CircuitOpens, failedWhileDown, backlog, drained.Round(time.Millisecond), dups)
}

// A receiver that refuses one event (400) while it accepts the others: that event alone is
// parked, every other one arrives in order, and the circuit never opens.
func TestBreakerParksOnlyARefusedEvent(t *testing.T) {
	b := newBed(t)
	var poison atomic.Pointer[string]
	rc := &receiver{t: t, behave: func(dl delivery) int {
		if p := poison.Load(); p != nil && dl.id == *p {
			return http.StatusBadRequest
		}
		return http.StatusOK
	}}
	srv := listen(t, "127.0.0.1:0", rc)
	defer srv.Close()
	cfg := testConfig(srv.URL)
	cfg.MaxAttempts = 4
	cfg.Timeout = 2 * time.Second
	start(t, b.js, cfg).Close() // the endpoint's consumer exists: it receives what follows
	rooms := []string{"x1", "x2", "x3"}
	for i := range 20 {
		for _, r := range rooms {
			b.append(t, r, i)
		}
	}
	ids, _ := b.logOf(t, "x2")
	poison.Store(&ids[4])
	d := start(t, b.js, cfg)
	defer d.Close()
	total := int64(len(rooms) * 21)
	require.Eventually(t, func() bool {
		st := d.Stats()[0]
		return st.Delivered+st.Parked >= total && st.Queued == 0
	}, 20*time.Second, 10*time.Millisecond)
	st := d.Stats()[0]
	require.Equal(t, int64(1), st.Parked)
	require.Zero(t, st.CircuitOpens)
	var parked []webhook.Parked
	require.NoError(t, webhook.ListParked(context.Background(), b.js, "", func(p webhook.Parked) error { parked = append(parked, p); return nil }))
	require.Len(t, parked, 1)
	require.Equal(t, ids[4], parked[0].EventID)
	require.Equal(t, 4, parked[0].Attempts)
	got, _ := rc.firstByRoom()
	for _, r := range rooms {
		want, _ := b.logOf(t, r)
		if r == "x2" {
			want = slices.DeleteFunc(want, func(id string) bool { return id == ids[4] })
		}
		require.Equal(t, want, got[r], "room %s", r)
	}
}

// Stats names an endpoint without the password in its URL: the URL becomes a metric label.
func TestStatsRedactsURL(t *testing.T) {
	b := newBed(t)
	d, err := webhook.Start(t.Context(), b.js, testConfig("http://user:hunter2@127.0.0.1:9/hook"))
	require.NoError(t, err)
	t.Cleanup(d.Close)
	st := d.Stats()
	require.Len(t, st, 1)
	require.Equal(t, "http://user:xxxxx@127.0.0.1:9/hook", st[0].URL)
}
