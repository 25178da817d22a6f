package projections_test

import (
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/events"
	"github.com/jetmedia/jetmedia/pipeline/eventlog"
)

// TestSustainedProjection appends JETMEDIA_SUSTAINED_RATE events/s (default 20000) across 64
// rooms for JETMEDIA_SUSTAINED seconds into a live log with the rooms projection running as
// the node runs it, and logs the projection's lag every second: it must stay bounded (and
// drain at the end), not grow with time. Only with JETMEDIA_SUSTAINED set: it is a figure for
// docs/benchmarks.md, not a timed pass/fail test.
func TestSustainedProjection(t *testing.T) {
	secs, _ := strconv.Atoi(os.Getenv("JETMEDIA_SUSTAINED"))
	if secs <= 0 {
		t.Skip("set JETMEDIA_SUSTAINED=<seconds> to run")
	}
	rate := 20_000
	if r, err := strconv.Atoi(os.Getenv("JETMEDIA_SUSTAINED_RATE")); err == nil && r > 0 {
		rate = r
	}
	e := start(t)
	ctx := t.Context()
	stop := runNodeProjection(t, e, e.kv, "sustained")
	defer stop()

	next := interleaved(64)
	const tick = 10 * time.Millisecond
	perTick := rate * int(tick) / int(time.Second)
	var pending []jetstream.PubAckFuture
	var maxLag uint64
	begin := time.Now()
	ticker := time.NewTicker(tick)
	defer ticker.Stop()
	lastReport, sent := begin, 0
	for time.Since(begin) < time.Duration(secs)*time.Second {
		<-ticker.C
		for range perTick {
			ev := next()
			raw, err := events.Encode(ev)
			require.NoError(t, err)
			f, err := e.js.PublishAsync(eventlog.EventSubject(ev.Room, events.Kind(ev.Type)), raw)
			require.NoError(t, err)
			pending = append(pending, f)
		}
		sent += perTick
		if len(pending) > 4*perTick {
			for _, f := range pending {
				select {
				case <-f.Ok():
				case err := <-f.Err():
					t.Fatalf("append: %v", err)
				}
			}
			pending = pending[:0]
		}
		if time.Since(lastReport) >= time.Second {
			lastReport = time.Now()
			lag, err := projectionLag(ctx, e.js, "sustained")
			require.NoError(t, err)
			maxLag = max(maxLag, lag)
			t.Logf("t=%3.0fs appended=%d (%.0f/s) projection lag=%d", time.Since(begin).Seconds(), sent,
				float64(sent)/time.Since(begin).Seconds(), lag)
		}
	}
	drain := time.Now()
	require.Eventually(t, func() bool {
		lag, err := projectionLag(ctx, e.js, "sustained")
		return err == nil && lag == 0
	}, 5*time.Minute, 10*time.Millisecond)
	t.Logf("appended %d events in %s (%.0f/s); max lag %d; drained in %s", sent, time.Since(begin).Round(time.Second),
		float64(sent)/drain.Sub(begin).Seconds(), maxLag, time.Since(drain).Round(time.Millisecond))
}
