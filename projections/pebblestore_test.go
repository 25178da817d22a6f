package projections_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/events"
	"github.com/jetmedia/jetmedia/pipeline/eventlog"
	"github.com/jetmedia/jetmedia/projections"
)

// workload is n events over three rooms: peers join, publish audio and video, unpublish and
// leave, with actors id0..id4, a minute apart in each room.
func workload(t testing.TB, n int) []events.Envelope {
	t.Helper()
	var out []events.Envelope
	step := map[string]int{}
	for i := 0; len(out) < n; i++ {
		room := fmt.Sprintf("room%d", i%3)
		k := step[room]
		step[room]++
		peer := fmt.Sprintf("p%d", k/4)
		var p events.Payload
		switch k % 4 {
		case 0:
			p = join(peer)
		case 1:
			p = pub(peer, peer+"a", "audio")
		case 2:
			p = pub(peer, peer+"v", "video")
		case 3:
			if k%8 == 3 {
				p = left(peer) // ends its tracks too
			} else {
				p = events.TrackUnpublished{Peer: peer, Track: peer + "v"}
			}
		}
		e, err := events.New(events.Meta{Room: room, Actor: fmt.Sprintf("id%d", (k/4)%5), Node: "n1",
			Time: h0.Add(time.Duration(k) * time.Minute)}, p)
		require.NoError(t, err)
		out = append(out, e)
	}
	return out
}

// publish stores evs raw on their subjects (the runner does not need the appender's chain)
// and returns them with their stream sequences.
func publish(t testing.TB, js jetstream.JetStream, evs []events.Envelope) []events.Envelope {
	t.Helper()
	for i, e := range evs {
		b, err := events.Encode(e)
		require.NoError(t, err)
		ack, err := js.Publish(t.Context(), eventlog.EventSubject(e.Room, events.Kind(e.Type)), b)
		require.NoError(t, err)
		evs[i].Seq = ack.Sequence
	}
	return evs
}

// runModels runs one runner per model on a consumer router (with the poison queue on
// poison.test), each from a durable named prefix-<model>; stop closes the router.
func runModels(t *testing.T, e env, db *pebble.DB, prefix string, cfg eventlog.ConsumerRouterConfig, models ...projections.Model) (stop func()) {
	return runModelsBatch(t, e, db, prefix, cfg, projections.DefaultMaxBatch, models...)
}

// runModelsBatch is runModels with batches of at most maxBatch events; the consumers are
// configured as a node's (projections.RunnerInFlight).
func runModelsBatch(t *testing.T, e env, db *pebble.DB, prefix string, cfg eventlog.ConsumerRouterConfig, maxBatch int, models ...projections.Model) (stop func()) {
	t.Helper()
	nc, err := e.srv.Connect("runner")
	require.NoError(t, err)
	r, err := eventlog.NewConsumerRouter(cfg)
	require.NoError(t, err)
	for _, m := range models {
		sub, err := eventlog.NewEventSubscriber(nc, eventlog.EventSubscriberConfig{Durable: prefix + "-" + m.Name(),
			Filter: eventlog.EventsSubjects, MaxAckPending: projections.RunnerInFlight})
		require.NoError(t, err)
		runner := projections.NewPebbleRunner(db, m, nil)
		require.NoError(t, runner.SetMaxBatch(maxBatch))
		r.AddConsumerHandler(m.Name(), eventlog.EventsSubjects, sub, runner.Handle)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = r.Run(context.Background()) }()
	<-r.Running()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			require.NoError(t, r.Close())
			wg.Wait()
			nc.Close()
		})
	}
	t.Cleanup(stop)
	return stop
}

func waitCheckpoint(t *testing.T, db *pebble.DB, model string, seq uint64) {
	t.Helper()
	require.Eventually(t, func() bool {
		cp, err := projections.Checkpoint(db, model)
		require.NoError(t, err)
		return cp >= seq
	}, 30*time.Second, 5*time.Millisecond)
}

// expected folds evs per room with the pure fold: what a single uninterrupted run must give.
func expected(t *testing.T, evs []events.Envelope, at time.Time) map[string]projections.RoomFigures {
	t.Helper()
	rooms := map[string]projections.RoomAnalytics{}
	for _, e := range evs {
		a, ok := rooms[e.Room]
		if !ok {
			a = projections.NewRoomAnalytics(e.Room)
		}
		a, err := projections.FoldAnalytics(a, e)
		require.NoError(t, err)
		rooms[e.Room] = a
	}
	out := map[string]projections.RoomFigures{}
	for id, a := range rooms {
		out[id] = a.Figures(at)
	}
	return out
}

func figures(t *testing.T, db pebble.Reader, rooms []string, at time.Time) map[string]projections.RoomFigures {
	t.Helper()
	out := map[string]projections.RoomFigures{}
	for _, id := range rooms {
		a, ok, err := projections.LoadAnalytics(db, id)
		require.NoError(t, err)
		require.True(t, ok, id)
		out[id] = a.Figures(at)
	}
	return out
}

// crashAt wraps a model: while applying the event at seq it takes a crash image of fs (what
// a kill -9 of the machine at that instant leaves: only synced data), before that event's
// batch commits.
type crashAt struct {
	projections.Model
	seq   uint64
	fs    *vfs.MemFS
	image atomic.Pointer[vfs.MemFS]
}

func (c *crashAt) Apply(b *pebble.Batch, e events.Envelope) error {
	if e.Seq == c.seq {
		c.image.Store(c.fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 0}))
	}
	return c.Model.Apply(b, e)
}

// TestPebbleRunnerResumesAfterCrash kills the runners mid-stream (a crash image of the
// filesystem taken while an event is being applied, in the middle of a batch of 100 whose
// events are acknowledged already), resumes on that image with every event redelivered from
// the start, and shows the figures and the audit index equal those of the uninterrupted run
// and of the pure fold: nothing lost, nothing counted twice.
func TestPebbleRunnerResumesAfterCrash(t *testing.T) {
	t.Run("Apply", func(t *testing.T) { testResumesAfterCrash(t, false) })
	t.Run("staged", func(t *testing.T) { testResumesAfterCrash(t, true) })
}

// crashStaged is crashAt for the analytics' staged path (a StagedModel).
type crashStaged struct{ *crashAt }

func (c crashStaged) NewStage() projections.Stage {
	return &crashStage{c: c.crashAt, Stage: projections.Analytics{}.NewStage()}
}

type crashStage struct {
	c *crashAt
	projections.Stage
}

func (s *crashStage) Apply(r pebble.Reader, e events.Envelope) error {
	if e.Seq == s.c.seq {
		s.c.image.Store(s.c.fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 0}))
	}
	return s.Stage.Apply(r, e)
}

func testResumesAfterCrash(t *testing.T, staged bool) {
	e := start(t)
	evs := publish(t, e.js, workload(t, 600))
	last := evs[len(evs)-1].Seq
	at := h0.Add(24 * time.Hour)
	rooms := []string{"room0", "room1", "room2"}
	want := expected(t, evs, at)

	fs := vfs.NewCrashableMem()
	db, err := projections.OpenPebble("rm", fs, false)
	require.NoError(t, err)
	crash := &crashAt{Model: projections.Analytics{}, seq: 250, fs: fs}
	var model projections.Model = crash
	if staged {
		model = crashStaged{crash}
	}
	stop := runModelsBatch(t, e, db, "run1", eventlog.ConsumerRouterConfig{}, 100, model, projections.AuditIndex{})
	waitCheckpoint(t, db, projections.AnalyticsModelName, last)
	waitCheckpoint(t, db, projections.AuditModelName, last)
	stop()
	require.Equal(t, want, figures(t, db, rooms, at), "uninterrupted run")
	whoWant := map[string]int{}
	for _, ev := range evs {
		whoWant[ev.Actor]++
	}
	require.NoError(t, db.Close())

	image := crash.image.Load()
	require.NotNil(t, image)
	db2, err := projections.OpenPebble("rm", image, false)
	require.NoError(t, err)
	defer func() { require.NoError(t, db2.Close()) }()
	cp, err := projections.Checkpoint(db2, projections.AnalyticsModelName)
	require.NoError(t, err)
	// The whole log was stored before the runners started, so no batch ends early (at the
	// newest event): batches end at 100, 200, ...
	require.Equal(t, uint64(200), cp, "the crash image holds every batch committed before the one being filled")
	partial := figures(t, db2, rooms, at)
	require.NotEqual(t, want, partial)

	// A new durable delivers the whole log again: the worst case after a crash (the real
	// consumer resumes from its ack floor, which is at or below the checkpoint).
	runModels(t, e, db2, "run2", eventlog.ConsumerRouterConfig{}, projections.Analytics{}, projections.AuditIndex{})
	waitCheckpoint(t, db2, projections.AnalyticsModelName, last)
	waitCheckpoint(t, db2, projections.AuditModelName, last)
	require.Equal(t, want, figures(t, db2, rooms, at), "resumed run")
	total := 0
	for who, n := range whoWant {
		refs, err := projections.AuditWho(db2, projections.AuditQuery{Identity: who})
		require.NoError(t, err)
		require.Len(t, refs, n, who)
		for i := 1; i < len(refs); i++ {
			require.False(t, refs[i].Time.Before(refs[i-1].Time), "time order")
		}
		total += n
	}
	require.Equal(t, len(evs), total)
}

// failOn applies every event, and then fails for those of actor "evil": their writes are in
// the batch when the error comes.
type failOn struct{ projections.Model }

var errEvil = errors.New("evil event")

func (f failOn) Apply(b *pebble.Batch, e events.Envelope) error {
	if err := f.Model.Apply(b, e); err != nil {
		return err
	}
	if e.Actor == "evil" {
		return errors.Join(errEvil, errors.New("on two lines")) // a header cannot hold the break
	}
	return nil
}

// TestPoisonQueue: one event whose handling always fails, after writing into the batch that
// holds the 20 events before it, and one that does not decode, are parked on the POISON stream
// after their retries; the events before them are kept, without the failing one's writes, and
// the events after them are applied.
func TestPoisonQueue(t *testing.T) {
	e := start(t)
	ctx := t.Context()
	require.NoError(t, eventlog.DeclarePoison(ctx, e.js, eventlog.StorageConfig{}))
	evs := publish(t, e.js, workload(t, 20))
	bad := evAt(t, 0, 30, "evil", join("x"))
	bad.Room, bad.Subject = "room1", "room1"
	evil := publish(t, e.js, []events.Envelope{bad})[0]
	garbage, err := e.js.Publish(ctx, eventlog.EventSubject("room0", "peer_joined"), []byte(`{"not":"an event"`))
	require.NoError(t, err)
	after := publish(t, e.js, workload(t, 40)[20:])
	last := after[len(after)-1].Seq

	db, err := projections.OpenPebble("rm", vfs.NewMem(), false)
	require.NoError(t, err)
	defer func() { require.NoError(t, db.Close()) }()
	runModels(t, e, db, "poison", eventlog.ConsumerRouterConfig{
		Poison: eventlog.NewPoisonPublisher(e.js), PoisonTopic: "poison.test", MaxRetries: 2, InitialInterval: time.Millisecond,
	}, failOn{projections.Analytics{}})
	waitCheckpoint(t, db, projections.AnalyticsModelName, last)

	at := h0.Add(24 * time.Hour)
	want := expected(t, append(evs, after...), at)
	require.Equal(t, want, figures(t, db, []string{"room0", "room1", "room2"}, at))

	stream, err := e.js.Stream(ctx, eventlog.StreamPoison)
	require.NoError(t, err)
	var parked []uint64
	for seq := uint64(1); ; seq++ {
		m, err := stream.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			break
		}
		require.NoError(t, err)
		require.Equal(t, "poison.test", m.Subject)
		require.NotEmpty(t, m.Header.Get("reason_poisoned"))
		if s := m.Header.Get(eventlog.MetaSeq); s == strconv.FormatUint(evil.Seq, 10) {
			require.Contains(t, m.Header.Get("reason_poisoned"), "evil event on two lines")
		}
		s, err := strconv.ParseUint(m.Header.Get(eventlog.MetaSeq), 10, 64)
		require.NoError(t, err)
		parked = append(parked, s)
	}
	require.Equal(t, []uint64{evil.Seq, garbage.Sequence}, parked)
}

// TestStagedPoison: in the analytics' staged path, an event the fold rejects (a known type whose
// data does not decode) in the middle of a batch is parked; the events before it, in the same
// batch, and after it are counted.
func TestStagedPoison(t *testing.T) {
	e := start(t)
	ctx := t.Context()
	require.NoError(t, eventlog.DeclarePoison(ctx, e.js, eventlog.StorageConfig{}))
	evs := publish(t, e.js, workload(t, 20))
	bad, err := events.New(events.Meta{Room: "room1", Actor: "x", Node: "n1", Time: h0}, join("x"))
	require.NoError(t, err)
	bad.Data = []byte(`{"peer":5}`)
	raw, err := events.Encode(bad)
	require.NoError(t, err)
	ack, err := e.js.Publish(ctx, eventlog.EventSubject("room1", events.Kind(bad.Type)), raw)
	require.NoError(t, err)
	after := publish(t, e.js, workload(t, 40)[20:])
	last := after[len(after)-1].Seq

	db, err := projections.OpenPebble("rm", vfs.NewMem(), false)
	require.NoError(t, err)
	defer func() { require.NoError(t, db.Close()) }()
	runModels(t, e, db, "staged", eventlog.ConsumerRouterConfig{
		Poison: eventlog.NewPoisonPublisher(e.js), PoisonTopic: "poison.test", MaxRetries: 2, InitialInterval: time.Millisecond,
	}, projections.Analytics{})
	waitCheckpoint(t, db, projections.AnalyticsModelName, last)
	at := h0.Add(24 * time.Hour)
	require.Equal(t, expected(t, append(evs, after...), at), figures(t, db, []string{"room0", "room1", "room2"}, at))
	stream, err := e.js.Stream(ctx, eventlog.StreamPoison)
	require.NoError(t, err)
	m, err := stream.GetMsg(ctx, 1)
	require.NoError(t, err)
	require.Equal(t, strconv.FormatUint(ack.Sequence, 10), m.Header.Get(eventlog.MetaSeq))
	_, err = stream.GetMsg(ctx, 2)
	require.ErrorIs(t, err, jetstream.ErrMsgNotFound, "one event parked")
}

// BenchmarkReadModelsCatchUp measures how fast the audit index and the analytics, side by
// side on one router as in a node, fold a log from the start (synced pebble batches on disk).
// "batched" is the node's configuration; "per-event" commits and acknowledges each event
// before the next is sent (one in flight), as the runners did before batching.
func BenchmarkReadModelsCatchUp(b *testing.B) {
	for _, c := range []struct {
		name               string
		inFlight, maxBatch int
	}{
		{"per-event", 1, 1},
		{"batched", projections.RunnerInFlight, projections.DefaultMaxBatch},
	} {
		b.Run(c.name, func(b *testing.B) { benchCatchUp(b, c.inFlight, c.maxBatch) })
	}
}

func benchCatchUp(b *testing.B, inFlight, maxBatch int) {
	b.ReportAllocs()
	e := start(b)
	evs := publish(b, e.js, workload(b, max(b.N, 10)))
	last := evs[len(evs)-1].Seq
	db, err := projections.OpenPebble(b.TempDir(), nil, false)
	require.NoError(b, err)
	defer func() { require.NoError(b, db.Close()) }()
	b.ResetTimer()
	nc, err := e.srv.Connect("bench")
	require.NoError(b, err)
	defer nc.Close()
	r, err := eventlog.NewConsumerRouter(eventlog.ConsumerRouterConfig{})
	require.NoError(b, err)
	for _, m := range []projections.Model{projections.AuditIndex{}, projections.Analytics{}} {
		sub, err := eventlog.NewEventSubscriber(nc, eventlog.EventSubscriberConfig{Durable: "bench-" + m.Name(),
			Filter: eventlog.EventsSubjects, MaxAckPending: inFlight})
		require.NoError(b, err)
		runner := projections.NewPebbleRunner(db, m, nil)
		require.NoError(b, runner.SetMaxBatch(maxBatch))
		r.AddConsumerHandler(m.Name(), eventlog.EventsSubjects, sub, runner.Handle)
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = r.Run(context.Background()) }()
	for _, m := range []string{projections.AuditModelName, projections.AnalyticsModelName} {
		for {
			cp, err := projections.Checkpoint(db, m)
			require.NoError(b, err)
			if cp >= last {
				break
			}
			time.Sleep(time.Millisecond)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(len(evs))/b.Elapsed().Seconds(), "events/s")
	require.NoError(b, r.Close())
	<-done
}

// BenchmarkPebbleRunnerHandle measures the apply path alone, without JetStream: the analytics
// runner handling stored events (decode, fold, batch, synced commits) into pebble on disk, at
// one event a commit and in batches.
func BenchmarkPebbleRunnerHandle(b *testing.B) {
	for _, batch := range []int{1, projections.DefaultMaxBatch} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			evs := workload(b, b.N)
			msgs := make([]*message.Message, len(evs))
			for i, e := range evs {
				raw, err := events.Encode(e)
				require.NoError(b, err)
				m := message.NewMessage(e.ID, raw)
				m.Metadata.Set(eventlog.MetaSeq, strconv.Itoa(i+1))
				m.Metadata.Set(eventlog.MetaPending, strconv.Itoa(len(evs)-i-1))
				msgs[i] = m
			}
			db, err := projections.OpenPebble(b.TempDir(), nil, false)
			require.NoError(b, err)
			defer func() { require.NoError(b, db.Close()) }()
			r := projections.NewPebbleRunner(db, projections.Analytics{}, nil)
			require.NoError(b, r.SetMaxBatch(batch))
			b.ReportAllocs()
			b.ResetTimer()
			for _, m := range msgs {
				if err := r.Handle(m); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
			cp, err := projections.Checkpoint(db, projections.AnalyticsModelName)
			require.NoError(b, err)
			require.Equal(b, uint64(b.N), cp)
		})
	}
}
