package tests

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/pion/webrtc/v4"
	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/cmd/jetmedia/app"
	"github.com/jetmedia/jetmedia/pipeline/eventlog"
	"github.com/jetmedia/jetmedia/tests/rtcclient"
)

// TestChurnSoak runs room lifecycles through a real node, each one WHIP publisher (audio and
// video) and churnViewers WHEP viewers that each receive both tracks, then all leave. It
// measures the heap in use after a GC once the first 10 lifecycles are over and after the
// last, and the goroutines, and fails when the heap grew by more than 10 % or goroutines or
// fan-outs stayed behind. It is a soak, not a timed test: it runs only with
// JETMEDIA_CHURN=<lifecycles> (JETMEDIA_CHURN_PARALLEL rooms at a time, default 4). Each
// measurement waits for what JetStream keeps for a while by design to go (the rooms bucket's
// markers of ended keys, a minute; the log's dedupe window of event ids, two minutes):
//
//	JETMEDIA_CHURN=1000 go test ./tests -run TestChurnSoak -v -timeout 60m
func TestChurnSoak(t *testing.T) {
	total, _ := strconv.Atoi(os.Getenv("JETMEDIA_CHURN"))
	if total <= 0 {
		t.Skip("set JETMEDIA_CHURN=<room lifecycles> (e.g. 1000) to run the churn soak")
	}
	parallel := 4
	if p, err := strconv.Atoi(os.Getenv("JETMEDIA_CHURN_PARALLEL")); err == nil && p > 0 {
		parallel = p
	}
	// JETMEDIA_CHURN_ROOMS=n reuses n room names in turn instead of a new room per lifecycle:
	// the log's and the rooms bucket's per-subject index then stops growing, which tells
	// what the node keeps per session from what JetStream keeps per room ever written.
	rooms, _ := strconv.Atoi(os.Getenv("JETMEDIA_CHURN_ROOMS"))
	const warm = 10
	require.Greater(t, total, warm)
	cfg := nodeConfig(t, "churn")
	cfg.Logger = slog.New(slog.DiscardHandler) // thousands of sessions: keep the output readable
	node := startNode(t, cfg)
	api := clientAPI(t)

	run := func(from, to int) {
		var wg sync.WaitGroup
		errs := make(chan error, to-from)
		next := make(chan int)
		for range parallel {
			wg.Go(func() {
				for i := range next {
					name := fmt.Sprintf("churn-%d", i)
					if rooms > 0 {
						name = fmt.Sprintf("churn-ring-%d", i%rooms)
					}
					if err := churnRoom(node, api, t, name); err != nil {
						errs <- fmt.Errorf("lifecycle %d: %w", i, err)
					}
				}
			})
		}
		for i := from; i < to; i++ {
			next <- i
		}
		close(next)
		wg.Wait()
		close(errs)
		for err := range errs {
			require.NoError(t, err)
		}
	}
	settle := func() (heap, live uint64, goroutines int) {
		idleSince := time.Now()
		// Sessions end asynchronously (DELETE answered, then the PeerConnection closes):
		// wait until the node holds no fan-out and the goroutines stop falling.
		require.Eventually(t, func() bool { return node.ForwardedTracks() == 0 }, 30*time.Second, 50*time.Millisecond, "fan-outs left")
		prev := -1
		for range 100 {
			n := runtime.NumGoroutine()
			if n == prev {
				break
			}
			prev = n
			time.Sleep(200 * time.Millisecond)
		}
		// The rooms bucket drops the markers of ended peers', tracks' and subscriptions' keys
		// after eventlog.RoomsMarkerTTL: wait until only the room records are left.
		roomsKV, err := node.JetStream().Stream(context.Background(), "KV_"+eventlog.BucketRooms)
		require.NoError(t, err)
		require.Eventually(t, func() bool {
			info, err := roomsKV.Info(context.Background(), jetstream.WithSubjectFilter(">"))
			if err != nil {
				return false
			}
			for subj := range info.State.Subjects {
				if !strings.HasSuffix(subj, ".room") {
					return false
				}
			}
			return true
		}, eventlog.RoomsMarkerTTL+30*time.Second, time.Second, "ended keys' markers still in the rooms bucket")
		// The EVENTS stream remembers every event id for its dedupe window (2 min) and
		// JetStream's file store keeps the write cache of a stream's last block for 10 s
		// after its last write (defaultCacheBufferExpiration), handing the buffer back to a
		// sync.Pool that a GC keeps for one more cycle: measure the idle node after both.
		evs, err := node.JetStream().Stream(context.Background(), eventlog.StreamEvents)
		require.NoError(t, err)
		info, err := evs.Info(context.Background())
		require.NoError(t, err)
		time.Sleep(time.Until(idleSince.Add(info.Config.Duplicates + 11*time.Second)))
		runtime.GC()
		runtime.GC()
		debug.FreeOSMemory()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapInuse, ms.HeapAlloc, runtime.NumGoroutine()
	}

	start := time.Now()
	run(0, warm)
	heapWarm, liveWarm, gWarm := settle()
	t.Logf("after %d lifecycles: heap in use %.1f MiB (live objects %.1f MiB), %d goroutines (%v)", warm, mib(heapWarm), mib(liveWarm), gWarm, time.Since(start).Round(time.Second))
	for done := warm; done < total; {
		step := min(total-done, 100)
		run(done, done+step)
		done += step
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		t.Logf("%d lifecycles: heap in use %.1f MiB (before GC), %d goroutines, %v", done, mib(ms.HeapInuse), runtime.NumGoroutine(), time.Since(start).Round(time.Second))
	}
	heapEnd, liveEnd, gEnd := settle()
	if path := os.Getenv("JETMEDIA_CHURN_HEAPPROFILE"); path != "" {
		f, err := os.Create(path)
		require.NoError(t, err)
		require.NoError(t, pprof.WriteHeapProfile(f))
		require.NoError(t, f.Close())
	}
	for _, name := range []string{eventlog.StreamEvents, "KV_" + eventlog.BucketRooms} {
		st, err := node.JetStream().Stream(context.Background(), name)
		require.NoError(t, err)
		info, err := st.Info(context.Background())
		require.NoError(t, err)
		t.Logf("stream %s: %d messages, %d subjects", name, info.State.Msgs, info.State.NumSubjects)
	}
	ratio := float64(heapEnd) / float64(heapWarm)
	t.Logf("after %d lifecycles: heap in use %.1f MiB (live objects %.1f MiB), %d goroutines (%v); heap in use ratio to after %d: %.3f (live objects %.3f)",
		total, mib(heapEnd), mib(liveEnd), gEnd, time.Since(start).Round(time.Second), warm, ratio, float64(liveEnd)/float64(liveWarm))
	require.LessOrEqual(t, ratio, 1.10, "heap in use grew by more than 10%%")
	require.LessOrEqual(t, gEnd, gWarm+2, "goroutines did not come back to their idle count")
}

func mib(b uint64) float64 { return float64(b) / (1 << 20) }

// churnViewers is the number of WHEP viewers of each churned room.
const churnViewers = 3

// churnRoom is one room's life: a publisher, churnViewers viewers receiving audio and video,
// then everyone leaves.
func churnRoom(node *app.Node, api *webrtc.API, t *testing.T, room string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	pub, err := rtcclient.Publish(ctx, api, node.HTTPURL(), room, asPublisher(t, room))
	if err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	defer pub.Close(true)
	viewers := make([]*rtcclient.Viewer, 0, churnViewers)
	defer func() {
		for _, v := range viewers {
			_ = v.Close()
		}
	}()
	for range churnViewers {
		v, err := rtcclient.Play(ctx, api, node.HTTPURL(), room, asViewer(t, room))
		if err != nil {
			return fmt.Errorf("play: %w", err)
		}
		viewers = append(viewers, v)
	}
	for _, v := range viewers {
		for v.Video.Load() < 5 || v.Audio.Load() < 5 {
			select {
			case <-ctx.Done():
				return fmt.Errorf("viewer got %d video and %d audio packets: %w", v.Video.Load(), v.Audio.Load(), ctx.Err())
			case <-time.After(10 * time.Millisecond):
			}
		}
	}
	return nil
}
