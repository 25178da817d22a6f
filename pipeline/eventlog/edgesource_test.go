package eventlog_test

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/pipeline/eventlog"
	"github.com/jetmedia/jetmedia/pipeline/natsnode"
)

// TestEdgeSourceWritersTakeTurns: edges that add themselves to the region's sources at once all
// stay there. A stream update carries the whole config; without the sources' lock, one's
// update overwrites another's.
func TestEdgeSourceWritersTakeTurns(t *testing.T) {
	n := start(t)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Go(func() {
			var added bool
			added, errs[i] = eventlog.AddEdgeSource(ctx, n.js, "edge-"+strconv.Itoa(i))
			if errs[i] == nil && !added {
				errs[i] = fmt.Errorf("edge-%d: not added", i)
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		require.NoError(t, err)
	}
	domains, err := eventlog.EdgeSources(ctx, n.js)
	require.NoError(t, err)
	require.ElementsMatch(t, []string{"edge-0", "edge-1", "edge-2", "edge-3", "edge-4", "edge-5", "edge-6", "edge-7"}, domains)

	removed, err := eventlog.RemoveEdgeSource(ctx, n.js, "edge-3")
	require.NoError(t, err)
	require.True(t, removed)
	domains, err = eventlog.EdgeSources(ctx, n.js)
	require.NoError(t, err)
	require.NotContains(t, domains, "edge-3")
	require.Len(t, domains, 7)
}

// TestRestartEdgeSourceResumes: a source the region restarts (RestartEdgeSource) goes on
// from where it stopped: every event of the edge is in the region's log once, in the edge's
// order, and the region's other sources stay. The edge's messages carry no message id, so
// the region's deduplication cannot hide a second copy.
func TestRestartEdgeSourceResumes(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	hub, err := natsnode.StartServer(ctx, natsnode.ServerConfig{Name: "region", JetStream: true, StoreDir: t.TempDir(),
		Leaf: natsnode.LeafConfig{Listen: "127.0.0.1:0"}})
	require.NoError(t, err)
	t.Cleanup(hub.Shutdown)
	region := connect(t, hub, "region")
	edgeSrv, err := natsnode.StartServer(ctx, natsnode.ServerConfig{Name: "edge", JetStream: true, StoreDir: t.TempDir(),
		Domain: "edge-x", Leaf: natsnode.LeafConfig{Hub: hub.LeafURL(), Isolate: []string{eventlog.EventsSubjects, "$KV.>"}}})
	require.NoError(t, err)
	t.Cleanup(edgeSrv.Shutdown)
	edge := connect(t, edgeSrv, "edge")
	enc, err := edgeSrv.Connect("edge-region")
	require.NoError(t, err)
	t.Cleanup(enc.Close)
	overLink, err := jetstream.NewWithDomain(enc, natsnode.DefaultDomain) // the region, as the edge reaches it
	require.NoError(t, err)

	_, err = eventlog.AddEdgeSource(ctx, region, "edge-other") // unreachable; must stay
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		_, err := eventlog.AddEdgeSource(ctx, overLink, "edge-x")
		return err == nil
	}, 20*time.Second, 100*time.Millisecond, "the edge adds its source over its link")

	var want []string
	publish := func(from, to int) {
		t.Helper()
		for i := from; i < to; i++ {
			body := strconv.Itoa(i)
			_, err := edge.PublishMsg(ctx, &nats.Msg{Subject: eventlog.EventSubject("r", "x"), Data: []byte(body)})
			require.NoError(t, err)
			want = append(want, body)
		}
	}
	copied := func() []string {
		t.Helper()
		s, err := region.Stream(ctx, eventlog.StreamEvents)
		require.NoError(t, err)
		var got []string
		for seq := uint64(1); seq <= s.CachedInfo().State.LastSeq; seq++ {
			m, err := s.GetMsg(ctx, seq)
			require.NoError(t, err)
			got = append(got, string(m.Data))
		}
		return got
	}
	waitCopied := func(msg string) {
		t.Helper()
		require.Eventually(t, func() bool { return len(copied()) >= len(want) }, 30*time.Second, 50*time.Millisecond, msg)
		time.Sleep(500 * time.Millisecond) // a second copy, were there one, would be there by now
		require.Equal(t, want, copied(), msg)
	}

	publish(0, 5)
	waitCopied("before the restart")
	for round := range 3 {
		// idle 0: the region has always been idle that long, so the source restarts.
		restarted, err := eventlog.RestartEdgeSource(ctx, overLink, edge, "edge-x", 0)
		require.NoError(t, err)
		require.True(t, restarted, "round %d", round)
		publish(5*(round+1), 5*(round+2))
		waitCopied(fmt.Sprintf("after restart %d", round))
	}
	domains, err := eventlog.EdgeSources(ctx, region)
	require.NoError(t, err)
	require.ElementsMatch(t, []string{"edge-other", "edge-x"}, domains)

	// A source the region heard from lately is left alone.
	restarted, err := eventlog.RestartEdgeSource(ctx, overLink, edge, "edge-x", time.Hour)
	require.NoError(t, err)
	require.False(t, restarted)

	// Once the region's log drops events, the copy a source put back finds its position from
	// may be gone (nats-server would start at the region's newest event's time): a source
	// whose last copied event is not a minute older than the region's oldest stays as it is.
	s, err := region.Stream(ctx, eventlog.StreamEvents)
	require.NoError(t, err)
	cfg := s.CachedInfo().Config
	cfg.MaxMsgs = int64(len(want))
	_, err = region.UpdateStream(ctx, cfg)
	require.NoError(t, err)
	for i := range 3 {
		_, err := region.Publish(ctx, eventlog.EventSubject("regional", "x"), []byte(strconv.Itoa(i)))
		require.NoError(t, err)
	}
	restarted, err = eventlog.RestartEdgeSource(ctx, overLink, edge, "edge-x", 0)
	require.NoError(t, err)
	require.False(t, restarted, "the region's log dropped events")
}
