package projections

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/pipeline/eventlog"
	"github.com/jetmedia/jetmedia/pipeline/natsnode"
	"github.com/jetmedia/jetmedia/tests/cutproxy"
	"github.com/jetmedia/jetmedia/tests/testlog"
)

// An edge's watch of the region's rooms bucket runs over its link (RunTrackEndsOverLink): ends
// written while the link is down are told once it heals, each once and in order, and the
// outage costs one WARN however long it lasts (its tries back off and log at Debug).
func TestTrackEndsOverLinkSurvivesCut(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conf := filepath.Join(t.TempDir(), "hub.conf")
	// The hub must not tell the edge its own leaf URL: the edge would reconnect past the proxy.
	require.NoError(t, os.WriteFile(conf, []byte("leafnodes { no_advertise: true }\n"), 0o600))
	hub, err := natsnode.StartServer(ctx, natsnode.ServerConfig{Name: "hub", JetStream: true, StoreDir: t.TempDir(),
		ConfigFile: conf, Leaf: natsnode.LeafConfig{Listen: "127.0.0.1:0"}})
	require.NoError(t, err)
	defer hub.Shutdown()
	proxy := cutproxy.New(t, strings.TrimPrefix(hub.LeafURL(), "nats-leaf://"))
	edge, err := natsnode.StartServer(ctx, natsnode.ServerConfig{Name: "edge", JetStream: true, StoreDir: t.TempDir(),
		Domain: "edge-x", Leaf: natsnode.LeafConfig{Hub: "nats-leaf://" + proxy.Addr(), Isolate: []string{"$KV.>"}}})
	require.NoError(t, err)
	defer edge.Shutdown()

	_, kv := declaredRooms(ctx, t, hub, "hub")
	enc, err := edge.Connect("edge")
	require.NoError(t, err)
	defer enc.Close()
	region, err := jetstream.NewWithDomain(enc, natsnode.DefaultDomain)
	require.NoError(t, err)

	var mu sync.Mutex
	var told []string
	toldNow := func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), told...)
	}
	warns := &testlog.Capture{Min: slog.LevelWarn}
	wctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		RunTrackEndsOverLink(wctx, region, eventlog.BucketRooms, func(room, track string) {
			mu.Lock()
			told = append(told, room+"/"+track)
			mu.Unlock()
		}, slog.New(warns))
	}()
	defer func() { stop(); <-done }()

	for _, k := range []string{"r.track.a", "r.track.b", "r.track.c", "r.peer.p"} {
		_, err := kv.Put(ctx, k, []byte("{}"))
		require.NoError(t, err)
	}
	// Until the link is up and the watch in place, a delete is written again and again: the
	// watch starts after the bucket's last message at its first try that reaches it.
	require.Eventually(t, func() bool {
		_, _ = kv.Put(ctx, "r.track.probe", []byte("{}"))
		_ = kv.Delete(ctx, "r.track.probe")
		time.Sleep(100 * time.Millisecond)
		return len(toldNow()) > 0
	}, 20*time.Second, 10*time.Millisecond, "the watch over the link tells an end")
	time.Sleep(200 * time.Millisecond)
	mu.Lock()
	told = nil
	mu.Unlock()
	start := time.Now()
	require.NoError(t, kv.Delete(ctx, "r.track.a"))
	require.Eventually(t, func() bool { return len(toldNow()) == 1 }, 5*time.Second, 5*time.Millisecond)
	t.Logf("linked: an end told over the link after %s", time.Since(start).Round(time.Millisecond))
	require.Empty(t, warns.Matching(""), "no warning while linked")

	proxy.Cut()
	require.Eventually(t, func() bool { return hub.NATS().NumLeafNodes() == 0 }, 10*time.Second, 10*time.Millisecond)
	require.NoError(t, kv.Delete(ctx, "r.track.b"))
	require.NoError(t, kv.Delete(ctx, "r.peer.p")) // not a track
	require.NoError(t, kv.Delete(ctx, "r.track.c"))
	time.Sleep(3*linkedRetryMax + time.Second) // tries at the longest backoff, all failing
	require.Equal(t, []string{"r/a"}, toldNow(), "nothing told while cut")
	require.LessOrEqual(t, len(warns.Matching("")), 1, "one warning per outage: %v", warns.Matching(""))

	proxy.Heal()
	healed := time.Now()
	require.Eventually(t, func() bool { return len(toldNow()) == 3 }, 20*time.Second, 10*time.Millisecond,
		"the ends written while cut are told after the heal")
	t.Logf("healed -> the ends written while cut told: %s", time.Since(healed).Round(time.Millisecond))
	time.Sleep(2 * time.Second) // a second telling, were there one, would have come by now
	require.Equal(t, []string{"r/a", "r/b", "r/c"}, toldNow(), "each end told once, in order")
	t.Logf("warnings: %q", warns.Matching(""))
	require.LessOrEqual(t, len(warns.Matching("")), 1, "one warning per outage: %v", warns.Matching(""))
}
