package projector

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/pipeline/eventlog"
	"github.com/jetmedia/jetmedia/pipeline/natsnode"
)

var fast = Timing{Renew: 100 * time.Millisecond, TTL: 600 * time.Millisecond}

// bucket starts a real embedded server and declares the projectors bucket on it.
func bucket(t *testing.T) jetstream.KeyValue {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv, err := natsnode.StartServer(ctx, natsnode.ServerConfig{Name: "projector-test", JetStream: true, StoreDir: t.TempDir()})
	require.NoError(t, err)
	t.Cleanup(srv.Shutdown)
	nc, err := srv.Connect("test")
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	kv, err := Declare(ctx, js, eventlog.StorageConfig{})
	require.NoError(t, err)
	return kv
}

// leaders counts the electors running their projection at once.
type leaders struct {
	now, most atomic.Int32
	mu        sync.Mutex
	runs      []string // who started leading, in order
}

func (l *leaders) lead(node string) Lead {
	return func(ctx context.Context) error {
		n := l.now.Add(1)
		for m := l.most.Load(); n > m && !l.most.CompareAndSwap(m, n); m = l.most.Load() {
		}
		l.mu.Lock()
		l.runs = append(l.runs, node)
		l.mu.Unlock()
		<-ctx.Done()
		l.now.Add(-1)
		return nil
	}
}

func (l *leaders) started() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.runs...)
}

// running is an elector in a goroutine of the test.
type running struct {
	e    *Elector
	stop context.CancelFunc
	done chan struct{}
}

func run(t *testing.T, kv jetstream.KeyValue, node string, l *leaders) *running {
	t.Helper()
	e, err := New(Config{KV: kv, Key: KeyRooms, Node: node, Timing: fast})
	require.NoError(t, err)
	ctx, stop := context.WithCancel(context.Background())
	r := &running{e: e, stop: stop, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		e.Run(ctx, l.lead(node))
	}()
	t.Cleanup(r.close)
	return r
}

func (r *running) close() {
	r.stop()
	<-r.done
}

func TestConfigValidates(t *testing.T) {
	kv := bucket(t)
	for _, cfg := range []Config{
		{Key: KeyRooms, Node: "a", Timing: fast},
		{KV: kv, Node: "a", Timing: fast},
		{KV: kv, Key: KeyRooms, Timing: fast},
		{KV: kv, Key: KeyRooms, Node: "a", Timing: Timing{Renew: time.Second, TTL: time.Second}},
		{KV: kv, Key: KeyRooms, Node: "a"},
	} {
		_, err := New(cfg)
		require.Error(t, err, "%+v", cfg)
	}
}

// Three nodes stand for one projection: one leads; when it stops cleanly it releases the
// lease and another leads within a renewal or so; never two at once.
func TestOneLeaderAndCleanHandover(t *testing.T) {
	kv := bucket(t)
	l := &leaders{}
	nodes := map[string]*running{}
	for _, name := range []string{"a", "b", "c"} {
		nodes[name] = run(t, kv, name, l)
	}
	require.Eventually(t, func() bool { return len(l.started()) == 1 }, 10*time.Second, 5*time.Millisecond)
	time.Sleep(5 * fast.TTL) // renewals keep the one leader
	require.Len(t, l.started(), 1, "the lease stays with its holder while it renews")
	first := l.started()[0]
	for name, r := range nodes {
		require.Equal(t, name == first, r.e.Leading(), name)
		require.Equal(t, first, r.e.Holder(), "%s reads who holds the lease", name)
	}

	stopped := time.Now()
	nodes[first].close()
	// Released, not left to expire: the key is gone, or a standby holds it already.
	if e, err := kv.Get(t.Context(), KeyRooms); err == nil {
		require.NotEqual(t, first, decodeRecord(e.Value()).Node, "released, not left to expire")
	} else {
		require.ErrorIs(t, err, jetstream.ErrKeyNotFound)
	}
	require.Eventually(t, func() bool { return len(l.started()) == 2 }, 10*time.Second, 5*time.Millisecond)
	t.Logf("clean handover from %s to %s in %v (renewal every %v)", first, l.started()[1], time.Since(stopped), fast.Renew)
	require.Equal(t, int32(1), l.most.Load(), "never two leaders at once")
}

// A holder that stops renewing without releasing (killed) loses the lease only after its TTL,
// by the standby's clock; the standby then takes it over.
func TestExpiredLeaseTakenOver(t *testing.T) {
	kv := bucket(t)
	ctx := t.Context()
	b, err := json.Marshal(Record{Node: "dead", Process: "p0", TTL: fast.TTL})
	require.NoError(t, err)
	_, err = kv.Create(ctx, KeyRooms, b)
	require.NoError(t, err)
	l := &leaders{}
	started := time.Now()
	r := run(t, kv, "b", l)
	require.Eventually(t, func() bool { return len(l.started()) == 1 }, 10*time.Second, 5*time.Millisecond)
	took := time.Since(started)
	require.GreaterOrEqual(t, took, fast.TTL, "not before the TTL")
	t.Logf("expired lease taken over %v after the standby first read it (TTL %v)", took, fast.TTL)
	require.Equal(t, "b", r.e.Holder())
	e, err := kv.Get(ctx, KeyRooms)
	require.NoError(t, err)
	require.Equal(t, "b", decodeRecord(e.Value()).Node)
}

// A node's next process takes the lease of its previous one at once: that process is dead.
func TestOwnPreviousLeaseTakenAtOnce(t *testing.T) {
	kv := bucket(t)
	b, err := json.Marshal(Record{Node: "a", Process: "previous", TTL: time.Hour})
	require.NoError(t, err)
	_, err = kv.Create(t.Context(), KeyRooms, b)
	require.NoError(t, err)
	l := &leaders{}
	run(t, kv, "a", l)
	require.Eventually(t, func() bool { return len(l.started()) == 1 }, 10*time.Second, 5*time.Millisecond,
		"at once, not after the record's TTL (an hour)")
}

// A holder whose lease was taken from under it (it stalled, say) stops its projection at its
// next renewal; the new holder keeps it.
func TestLostLeaseStopsProjection(t *testing.T) {
	kv := bucket(t)
	ctx := t.Context()
	l := &leaders{}
	a := run(t, kv, "a", l)
	require.Eventually(t, a.e.Leading, 10*time.Second, 5*time.Millisecond)
	e, err := kv.Get(ctx, KeyRooms)
	require.NoError(t, err)
	b, err := json.Marshal(Record{Node: "x", Process: "p", TTL: time.Hour})
	require.NoError(t, err)
	_, err = kv.Update(ctx, KeyRooms, b, e.Revision())
	require.NoError(t, err)
	require.Eventually(t, func() bool { return !a.e.Leading() && l.now.Load() == 0 }, 10*time.Second, 5*time.Millisecond,
		"the projection stops")
	time.Sleep(3 * fast.Renew)
	require.False(t, a.e.Leading(), "x's record is fresh to a: it stands by")
	require.Equal(t, "x", a.e.Holder())
}

// Many electors started and stopped in turn: the projection runs on at most one at any time.
func TestNeverTwoLeaders(t *testing.T) {
	kv := bucket(t)
	l := &leaders{}
	var all []*running
	for i := range 6 {
		all = append(all, run(t, kv, fmt.Sprint("n", i), l))
	}
	closed := map[*running]bool{}
	for range 4 {
		var leader *running
		require.Eventually(t, func() bool {
			for _, r := range all {
				if !closed[r] && r.e.Leading() {
					leader = r
					return true
				}
			}
			return false
		}, 10*time.Second, time.Millisecond)
		time.Sleep(fast.Renew) // a renewal or two in its term
		leader.close()
		closed[leader] = true
	}
	require.Eventually(t, func() bool { return len(l.started()) >= 5 }, 10*time.Second, 5*time.Millisecond)
	require.Equal(t, int32(1), l.most.Load())
}

func TestWatchAges(t *testing.T) {
	t0 := time.Date(2026, 12, 7, 5, 0, 0, 0, time.UTC)
	var w watch
	require.Zero(t, w.observe(t0, 5))
	require.Equal(t, time.Second, w.observe(t0.Add(time.Second), 5))
	require.Zero(t, w.observe(t0.Add(2*time.Second), 6), "a new revision: renewed")
	w.forgive(t0.Add(5 * time.Second))
	require.Equal(t, time.Second, w.observe(t0.Add(6*time.Second), 6), "a shared silence is forgiven")
	require.Zero(t, w.observe(t0, 7), "a clock gone back ages nothing")
}
