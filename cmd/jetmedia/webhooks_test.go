package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/cmd/jetmedia/app"
	"github.com/jetmedia/jetmedia/egress/webhook"
	"github.com/jetmedia/jetmedia/events"
	"github.com/jetmedia/jetmedia/pipeline/eventlog"
)

// A node configured with a webhook parks what its receiver refuses; the CLI lists the parked
// events and redrives them once the receiver is back. The receiver answers 500 to everything,
// which the circuit breaker would take for an outage and hold: breaker=off parks as before.
func TestWebhooksParkedAndRedrive(t *testing.T) {
	var healthy atomic.Bool
	var mu sync.Mutex
	var got []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !healthy.Load() {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		mu.Lock()
		got = append(got, r.Header.Get(webhook.HeaderID))
		mu.Unlock()
	}))
	defer srv.Close()
	endpoint := "url=" + srv.URL + ",types=peer.joined,secret=s3cret,breaker=off"

	cfg := cliNodeConfig(t, "hooks")
	fs := serveFlags(&cfg, new(string))
	require.NoError(t, fs.Parse([]string{"--webhook", endpoint, "--webhook-max-attempts=2",
		"--webhook-backoff=5ms", "--webhook-max-backoff=10ms", "--webhook-timeout=1s"}))
	require.Len(t, cfg.Webhooks.Endpoints, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	node := startCLINode(t, ctx, cfg)

	ap := eventlog.NewAppender(node.JetStream(), "hooks")
	var want []string
	for _, peer := range []string{"a", "b", "c"} {
		e, err := events.New(events.Meta{Room: "hooked", Actor: peer, Node: "hooks", Time: time.Now()},
			events.PeerJoined{Peer: peer, Transport: "whip", Role: "publisher", Node: "hooks"})
		require.NoError(t, err)
		_, err = ap.Append(ctx, e)
		require.NoError(t, err)
		want = append(want, e.ID)
	}

	data := "--data=" + cfg.DataDir
	var parked []webhook.Parked
	require.Eventually(t, func() bool {
		out, err := runCLI(t, "webhooks", "parked", data, "--json")
		require.NoError(t, err)
		parked = parked[:0]
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			if line == "" {
				continue
			}
			var p webhook.Parked
			require.NoError(t, json.Unmarshal([]byte(line), &p))
			parked = append(parked, p)
		}
		return len(parked) == 3 // room.created is filtered out
	}, 15*time.Second, 50*time.Millisecond)
	for i, p := range parked {
		require.Equal(t, want[i], p.EventID)
		require.Equal(t, srv.URL, p.URL)
	}
	out, err := runCLI(t, "webhooks", "parked", data)
	require.NoError(t, err)
	require.Contains(t, out, "hooked")
	require.Eventually(t, func() bool {
		resp, err := http.Get(node.HTTPURL() + "/metrics")
		require.NoError(t, err)
		metrics, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return strings.Contains(string(metrics), `jetmedia_webhook_parked_total{endpoint="`+srv.URL+`"} 3`) &&
			strings.Contains(string(metrics), `jetmedia_webhook_failed_attempts_total{endpoint="`+srv.URL+`"} 6`)
	}, 5*time.Second, 20*time.Millisecond)

	_, err = runCLI(t, "webhooks", "redrive", data)
	require.ErrorContains(t, err, "no endpoint configured")

	healthy.Store(true)
	out, err = runCLI(t, "webhooks", "redrive", data, "--webhook", endpoint)
	require.NoError(t, err)
	require.Contains(t, out, "delivered 3, failed 0")
	mu.Lock()
	require.Equal(t, want, got)
	mu.Unlock()
	out, err = runCLI(t, "webhooks", "parked", data)
	require.NoError(t, err)
	require.Contains(t, out, "no parked events")
}

func TestWebhookFlagsFromEnv(t *testing.T) {
	t.Setenv("JETMEDIA_WEBHOOKS", "url=https://a.example/h https://b.example/h")
	t.Setenv("JETMEDIA_WEBHOOK_MAX_ATTEMPTS", "4")
	cfg := app.Defaults()
	fs := serveFlags(&cfg, new(string))
	require.NoError(t, applyEnv(fs))
	require.NoError(t, fs.Parse([]string{"--webhook", "url=https://c.example/h,types=peer.left.v1"}))
	require.Len(t, cfg.Webhooks.Endpoints, 3)
	require.Equal(t, []string{"peer.left.v1"}, cfg.Webhooks.Endpoints[2].Types)
	require.Equal(t, 4, cfg.Webhooks.MaxAttempts)
	require.NoError(t, cfg.Validate())
	require.Error(t, fs.Set("webhook", "url=nope"))
}

// A node stopped while its receiver fails delivers everything, in order, once it runs again on
// the same data directory.
func TestWebhooksAcrossNodeRestart(t *testing.T) {
	var healthy atomic.Bool
	var mu sync.Mutex
	var got []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !healthy.Load() {
			w.WriteHeader(http.StatusBadGateway)
			return
		}
		mu.Lock()
		got = append(got, r.Header.Get(webhook.HeaderID))
		mu.Unlock()
	}))
	defer srv.Close()
	cfg := app.Defaults()
	cfg.Name = "restart"
	cfg.DataDir = t.TempDir()
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.UDPPort = 0
	cfg.Webhooks.Endpoints = []webhook.Endpoint{{URL: srv.URL, Secret: "s"}}
	cfg.Webhooks.InitialBackoff = 5 * time.Millisecond
	cfg.Webhooks.MaxBackoff = 20 * time.Millisecond
	cfg.Webhooks.MaxAttempts = 100000 // nothing parks here
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	node, err := app.Start(ctx, cfg)
	require.NoError(t, err)
	ap := eventlog.NewAppender(node.JetStream(), "restart")
	for i := range 20 {
		peer := "p" + strconv.Itoa(i)
		e, err := events.New(events.Meta{Room: "rs" + strconv.Itoa(i%3), Actor: peer, Node: "restart", Time: time.Now()},
			events.PeerJoined{Peer: peer, Transport: "whip", Role: "publisher", Node: "restart"})
		require.NoError(t, err)
		_, err = ap.Append(ctx, e)
		require.NoError(t, err)
	}
	want := map[string][]string{}
	for r := range 3 {
		room := "rs" + strconv.Itoa(r)
		require.NoError(t, eventlog.Read(ctx, node.JetStream(), eventlog.ReadOptions{Filter: eventlog.RoomEventsFilter(room)},
			func(e events.Envelope) error { want[room] = append(want[room], e.ID); return nil }))
	}
	time.Sleep(50 * time.Millisecond) // events taken, attempts failing
	// Every request fails with 502: the endpoint's circuit breaker opens, and /metrics says so.
	require.Eventually(t, func() bool {
		resp, err := http.Get(node.HTTPURL() + "/metrics")
		require.NoError(t, err)
		metrics, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return strings.Contains(string(metrics), `jetmedia_webhook_circuit_open{endpoint="`+srv.URL+`"} 1`) &&
			strings.Contains(string(metrics), `jetmedia_webhook_circuit_opened_total{endpoint="`+srv.URL+`"} 1`)
	}, 10*time.Second, 20*time.Millisecond)
	require.NoError(t, node.Close())

	healthy.Store(true)
	node, err = app.Start(ctx, cfg)
	require.NoError(t, err)
	defer func() { _ = node.Close() }()
	room := map[string]string{}
	for r, ids := range want {
		for _, id := range ids {
			room[id] = r
		}
	}
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		n := map[string]bool{}
		for _, id := range got {
			n[id] = true
		}
		return len(n) >= len(room)
	}, 15*time.Second, 20*time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	byRoom := map[string][]string{}
	seen := map[string]bool{}
	for _, id := range got {
		if !seen[id] { // duplicates are allowed, order is checked on first deliveries
			seen[id] = true
			byRoom[room[id]] = append(byRoom[room[id]], id)
		}
	}
	for r, ids := range want {
		require.Equal(t, ids, byRoom[r], "room %s", r)
	}
}
