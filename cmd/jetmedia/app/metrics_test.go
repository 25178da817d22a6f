package app

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/events"
)

func TestCountRooms(t *testing.T) {
	for _, tc := range []struct {
		name string
		keys []string
		want roomCounts
	}{
		{"empty", nil, roomCounts{}},
		{"room with no peer left is not live", []string{"a.room"}, roomCounts{}},
		{"one publisher and a viewer", []string{
			"a.room", "a.peer.p1", "a.peer.v1", "a.track.t1", "a.track.t2", "a.sub.v1.t1", "a.sub.v1.t2",
		}, roomCounts{Rooms: 1, Peers: 2, Tracks: 2, Subscriptions: 2}},
		{"two rooms, one empty", []string{"a.room", "a.peer.p1", "b.room", "b.track.t9"},
			roomCounts{Rooms: 1, Peers: 1, Tracks: 1}},
		{"unknown kinds and keys without a room are ignored", []string{"x", "a.other.y", "a.peer.p"},
			roomCounts{Rooms: 1, Peers: 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			snap := map[string][]byte{}
			for _, k := range tc.keys {
				snap[k] = nil
			}
			require.Equal(t, tc.want, countRooms(snap))
		})
	}
}

type fakeAppender struct{ err error }

func (f fakeAppender) Append(context.Context, ...events.Envelope) (uint64, error) {
	time.Sleep(time.Millisecond)
	return 7, f.err
}

func TestTimedAppender(t *testing.T) {
	m := newMetrics(&Node{})
	seq, err := m.appender(fakeAppender{}).Append(context.Background())
	require.NoError(t, err)
	require.Equal(t, uint64(7), seq)
	_, err = m.appender(fakeAppender{err: errors.New("boom")}).Append(context.Background())
	require.Error(t, err)
	require.Equal(t, 1.0, testutil.ToFloat64(m.appendErrors))
	mfs, err := m.reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() == "jetmedia_event_append_duration_seconds" {
			h := mf.GetMetric()[0].GetHistogram()
			require.Equal(t, uint64(2), h.GetSampleCount())
			require.Greater(t, h.GetSampleSum(), 0.002*0.9)
		}
	}
}

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
