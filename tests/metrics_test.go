package tests

import (
	"net/http"
	"runtime"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/cmd/jetmedia/app"
	"github.com/jetmedia/jetmedia/tests/rtcclient"
)

// scrape reads a node's /metrics and parses it as Prometheus text.
func scrape(t *testing.T, node *app.Node) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(node.HTTPURL() + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	var p expfmt.TextParser
	mfs, err := p.TextToMetricFamilies(resp.Body)
	require.NoError(t, err)
	return mfs
}

// value is the sum of a family's samples whose labels include want (counter, gauge or the
// sample count of a histogram).
func value(t *testing.T, mfs map[string]*dto.MetricFamily, name string, want ...string) float64 {
	t.Helper()
	mf, ok := mfs[name]
	require.True(t, ok, "metric %s is exposed", name)
	sum := 0.0
next:
	for _, m := range mf.GetMetric() {
		for i := 0; i+1 < len(want); i += 2 {
			found := false
			for _, l := range m.GetLabel() {
				if l.GetName() == want[i] && l.GetValue() == want[i+1] {
					found = true
				}
			}
			if !found {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			sum += m.GetCounter().GetValue()
		case m.Gauge != nil:
			sum += m.GetGauge().GetValue()
		case m.Histogram != nil:
			sum += float64(m.GetHistogram().GetSampleCount())
		}
	}
	return sum
}

// TestMetricsMove: after a short publish-and-view session through a real node, /metrics shows
// the media and control counters moved, the sessions and room gauges, and the node is ready.
func TestMetricsMove(t *testing.T) {
	node := startNode(t, nodeConfig(t, "metrics"))
	api := clientAPI(t)
	room := newRoom("metrics")
	ctx := ctxT(t, 60*time.Second)

	before := scrape(t, node)
	require.Zero(t, value(t, before, "jetmedia_ingress_rtp_packets_total", "transport", "whip"))
	require.Zero(t, value(t, before, "jetmedia_sessions"))

	pub := publishTracks(t, ctx, api, node, room)
	defer pub.Close(true)
	viewer, err := rtcclient.Play(ctx, api, node.HTTPURL(), room, asViewer(t, room))
	require.NoError(t, err)
	defer viewer.Close()
	require.Eventually(t, func() bool { return viewer.Video.Load() > 10 && viewer.Audio.Load() > 10 },
		15*time.Second, 20*time.Millisecond)
	_, err = viewer.NACKLastVideo()
	require.NoError(t, err)
	require.Eventually(t, func() bool { return node.Forwarding().NACKs > 0 }, 5*time.Second, 10*time.Millisecond)
	require.NoError(t, node.WaitProjected(ctx))

	m := scrape(t, node)
	require.Equal(t, 1.0, value(t, m, "jetmedia_sessions", "transport", "whip"))
	require.Equal(t, 1.0, value(t, m, "jetmedia_sessions", "transport", "whep"))
	require.Positive(t, value(t, m, "jetmedia_ingress_rtp_packets_total", "transport", "whip"))
	require.Greater(t, value(t, m, "jetmedia_ingress_rtp_bytes_total", "transport", "whip"),
		value(t, m, "jetmedia_ingress_rtp_packets_total", "transport", "whip")*12, "bytes count whole packets")
	require.Positive(t, value(t, m, "jetmedia_egress_rtp_packets_total"))
	require.Positive(t, value(t, m, "jetmedia_egress_rtp_bytes_total"))
	require.Positive(t, value(t, m, "jetmedia_rtcp_nacks_received_total"))
	require.Positive(t, value(t, m, "jetmedia_rtcp_nack_requested_packets_total"))
	require.Positive(t, value(t, m, "jetmedia_rtcp_plis_sent_total"), "the viewer's first keyframe request reached the publisher")
	require.Positive(t, value(t, m, "jetmedia_media_bus_messages_total", "direction", "published"))
	require.Zero(t, value(t, m, "jetmedia_rtp_dropped_packets_total"))
	// peer.joined, track.published x2, subscription.started...: several timed appends.
	require.GreaterOrEqual(t, value(t, m, "jetmedia_event_append_duration_seconds"), 4.0)
	require.Zero(t, value(t, m, "jetmedia_event_append_errors_total"))
	require.Equal(t, 1.0, value(t, m, "jetmedia_rooms"))
	require.Equal(t, 2.0, value(t, m, "jetmedia_peers"))
	require.Equal(t, 2.0, value(t, m, "jetmedia_tracks"))
	require.Equal(t, 2.0, value(t, m, "jetmedia_subscriptions"))
	require.Zero(t, value(t, m, "jetmedia_projection_lag_events"))
	require.Zero(t, value(t, m, "jetmedia_nats_slow_consumers_total"))
	require.Positive(t, value(t, m, "process_resident_memory_bytes"))
	// One viewer: its packets are written at once, not batched.
	require.Positive(t, value(t, m, "jetmedia_edge_datagrams_sent_total", "path", "direct"))
	require.Zero(t, value(t, m, "jetmedia_edge_send_errors_total"))
	// Loopback: the bandwidth allocation paused nothing (the series are there, at zero).
	require.Zero(t, value(t, m, "jetmedia_congestion_video_pauses_total", "change", "paused"))
	require.Zero(t, value(t, m, "jetmedia_congestion_layer_changes_total", "direction", "down"))
	// The viewer's pacing dropped nothing (its cache replay may have waited: queued is >= 0).
	require.Zero(t, value(t, m, "jetmedia_pacing_packets_total", "result", "dropped"))
	require.GreaterOrEqual(t, value(t, m, "jetmedia_pacing_bytes_total", "result", "queued"), 0.0)
	if runtime.GOOS == "linux" {
		require.Equal(t, 1.0, value(t, m, "jetmedia_edge_gso"), "UDP GSO is on by default where the kernel has it")
	}

	resp, err := http.Get(node.HTTPURL() + "/readyz")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)

	// Counters never go back; the sessions gauge follows the viewer leaving.
	require.NoError(t, viewer.Close())
	require.Eventually(t, func() bool {
		return value(t, scrape(t, node), "jetmedia_sessions", "transport", "whep") == 0
	}, 10*time.Second, 50*time.Millisecond)
	after := scrape(t, node)
	require.GreaterOrEqual(t, value(t, after, "jetmedia_egress_rtp_packets_total"), value(t, m, "jetmedia_egress_rtp_packets_total"))
}
