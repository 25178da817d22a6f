package app

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	"github.com/stretchr/testify/require"
)

// TestMetricNames lints every metric a live node exposes against the Prometheus conventions
// (promlint: _total counters, base units, help text...) and checks that the families the
// operator docs name are all there.
func TestMetricNames(t *testing.T) {
	cfg := Defaults()
	cfg.Name = "lint"
	cfg.DataDir = t.TempDir()
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.UDPPort = 0
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	n, err := Start(ctx, cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = n.Close() })

	resp, err := http.Get(n.HTTPURL() + "/metrics")
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode)

	problems, err := promlint.New(strings.NewReader(string(body))).Lint()
	require.NoError(t, err)
	var ours []promlint.Problem
	for _, p := range problems {
		if strings.HasPrefix(p.Metric, "jetmedia_") {
			ours = append(ours, p)
		}
	}
	require.Empty(t, ours, "metric names must follow the Prometheus conventions")

	for _, name := range []string{
		"jetmedia_sessions", "jetmedia_rooms", "jetmedia_peers", "jetmedia_tracks", "jetmedia_subscriptions",
		"jetmedia_ingress_rtp_packets_total", "jetmedia_ingress_rtp_bytes_total",
		"jetmedia_egress_rtp_packets_total", "jetmedia_egress_rtp_bytes_total",
		"jetmedia_egress_rtp_retransmitted_packets_total", "jetmedia_rtcp_nacks_received_total",
		"jetmedia_rtcp_nack_requested_packets_total", "jetmedia_rtcp_plis_sent_total",
		"jetmedia_rtp_dropped_packets_total", "jetmedia_media_bus_messages_total",
		"jetmedia_event_append_duration_seconds", "jetmedia_event_append_errors_total",
		"jetmedia_projection_lag_events", "jetmedia_nats_slow_consumers_total",
		"jetmedia_edge_datagrams_sent_total", "jetmedia_edge_send_errors_total",
		"jetmedia_edge_gso_segments_total", "jetmedia_edge_gso",
		"jetmedia_egress_rtp_replayed_packets_total", "jetmedia_forward_stage_seconds",
		"process_cpu_seconds_total", "process_resident_memory_bytes",
	} {
		require.Contains(t, string(body), "\n# TYPE "+name+" ", "metric %s is exposed", name)
	}

	resp, err = http.Get(n.HTTPURL() + "/readyz")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)

	// A node whose sessions are closing (shutdown has begun) is no longer ready.
	require.NoError(t, n.sessions.Close())
	resp, err = http.Get(n.HTTPURL() + "/readyz")
	require.NoError(t, err)
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	require.Contains(t, string(body), "shutting down")
}
