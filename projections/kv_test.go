package projections_test

import (
	"context"
	"encoding/json"
	"maps"
	"strconv"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/events"
	"github.com/jetmedia/jetmedia/pipeline/eventlog"
	"github.com/jetmedia/jetmedia/pipeline/natsnode"
	"github.com/jetmedia/jetmedia/projections"
)

type env struct {
	srv *natsnode.Server
	js  jetstream.JetStream
	kv  jetstream.KeyValue
}

// start runs a real embedded server with JetStream in a temporary directory and declares the
// stream and bucket.
func start(t testing.TB) env {
	t.Helper()
	ctx := t.Context()
	srv, err := natsnode.StartServer(ctx, natsnode.ServerConfig{Name: "proj-test", JetStream: true, StoreDir: t.TempDir()})
	require.NoError(t, err)
	t.Cleanup(srv.Shutdown)
	nc, err := srv.Connect("test")
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	require.NoError(t, eventlog.Declare(ctx, js, eventlog.StorageConfig{}))
	kv, err := js.KeyValue(ctx, eventlog.BucketRooms)
	require.NoError(t, err)
	return env{srv: srv, js: js, kv: kv}
}

// withLeave is base plus the events that delete keys: an unpublish, a sub end, a peer.left.
func withLeave(t testing.TB) []events.Envelope {
	return append(base(t),
		ev(t, 11, events.SubscriptionEnded{Peer: "view", Track: "a"}),
		ev(t, 12, events.TrackUnpublished{Peer: "cam2", Track: "c"}),
		ev(t, 13, events.PeerLeft{Peer: "pub", Reason: "closed"}),
		ev(t, 14, events.PeerJoined{Peer: "late", Transport: "whep", Role: "viewer", Node: "n1"}),
	)
}

func loadEntries(t *testing.T, kv jetstream.KeyValue) map[string]string {
	t.Helper()
	r, err := projections.LoadRoom(t.Context(), kv, "r")
	require.NoError(t, err)
	return entries(t, r)
}

func wantEntries(t *testing.T, evs []events.Envelope) map[string]string {
	t.Helper()
	r, err := projections.FoldAll("r", evs)
	require.NoError(t, err)
	return entries(t, r)
}

func rev(t *testing.T, kv jetstream.KeyValue, key string) uint64 {
	t.Helper()
	e, err := kv.Get(t.Context(), key)
	require.NoError(t, err)
	return e.Revision()
}

func TestKVRunnerApply(t *testing.T) {
	e := start(t)
	ctx := t.Context()
	k := projections.NewKVRunner(e.kv, nil)
	evs := withLeave(t)
	for i, x := range evs {
		require.NoError(t, k.Apply(ctx, x))
		require.Equal(t, wantEntries(t, evs[:i+1]), loadEntries(t, e.kv), "after event %d", i)
	}
	snap, err := projections.Snapshot(ctx, e.kv)
	require.NoError(t, err)
	require.Equal(t, wantEntries(t, evs), stringMap(snap), "no stale keys left in the bucket")

	rooms, err := projections.Rooms(ctx, e.kv)
	require.NoError(t, err)
	require.Len(t, rooms, 1)
	require.Equal(t, wantEntries(t, evs), entries(t, rooms[0]))
}

func TestKVRunnerApplyTwiceIsOneEffect(t *testing.T) {
	e := start(t)
	ctx := t.Context()
	k := projections.NewKVRunner(e.kv, nil)
	evs := base(t)
	for _, x := range evs {
		require.NoError(t, k.Apply(ctx, x))
	}
	before := rev(t, e.kv, projections.RoomKey("r"))
	st, err := e.kv.Status(ctx)
	require.NoError(t, err)
	writes := st.Values()

	for _, x := range []events.Envelope{evs[9], evs[3], evs[0]} {
		require.NoError(t, k.Apply(ctx, x))
	}
	require.Equal(t, before, rev(t, e.kv, projections.RoomKey("r")), "redelivery wrote the room record")
	st, err = e.kv.Status(ctx)
	require.NoError(t, err)
	require.Equal(t, writes, st.Values(), "redelivery wrote to the bucket")
	require.Equal(t, wantEntries(t, evs), loadEntries(t, e.kv))
}

// A fresh runner (a restarted node) reads each room's checkpoint from the bucket: events it
// is redelivered are no-ops and it continues with the rest.
func TestKVRunnerRestart(t *testing.T) {
	e := start(t)
	ctx := t.Context()
	evs := withLeave(t)
	first := projections.NewKVRunner(e.kv, nil)
	for _, x := range evs[:8] {
		require.NoError(t, first.Apply(ctx, x))
	}
	before := rev(t, e.kv, projections.RoomKey("r"))

	restarted := projections.NewKVRunner(e.kv, nil)
	for _, x := range evs[5:8] { // redelivered after the restart
		require.NoError(t, restarted.Apply(ctx, x))
	}
	require.Equal(t, before, rev(t, e.kv, projections.RoomKey("r")))
	for _, x := range evs[8:] {
		require.NoError(t, restarted.Apply(ctx, x))
	}
	require.Equal(t, wantEntries(t, evs), loadEntries(t, e.kv))
}

// Two runners (two nodes) taking turns on one room: each must notice the other moved the room
// and not write from a stale cache.
func TestKVRunnerTwoNodes(t *testing.T) {
	e := start(t)
	ctx := t.Context()
	evs := withLeave(t)
	a, b := projections.NewKVRunner(e.kv, nil), projections.NewKVRunner(e.kv, nil)
	turns := []struct {
		k        *projections.KVRunner
		from, to int
	}{{a, 0, 6}, {b, 6, 10}, {a, 10, 12}, {b, 12, 14}}
	for _, turn := range turns {
		for _, x := range evs[turn.from:turn.to] {
			require.NoError(t, turn.k.Apply(ctx, x))
		}
		require.Equal(t, wantEntries(t, evs[:turn.to]), loadEntries(t, e.kv), "after events [%d,%d)", turn.from, turn.to)
	}
	snap, err := projections.Snapshot(ctx, e.kv)
	require.NoError(t, err)
	require.Equal(t, wantEntries(t, evs), stringMap(snap))
}

func storedMsg(t *testing.T, x events.Envelope, seq string) *message.Message {
	t.Helper()
	b, err := events.Encode(x)
	require.NoError(t, err)
	m := message.NewMessage(x.ID, b)
	if seq != "" {
		m.Metadata.Set(eventlog.MetaSeq, seq)
	}
	m.SetContext(t.Context())
	return m
}

func TestKVRunnerHandle(t *testing.T) {
	e := start(t)
	k := projections.NewKVRunner(e.kv, nil)
	evs := base(t)

	require.NoError(t, k.Handle(storedMsg(t, evs[0], "1")))
	require.Error(t, k.Handle(storedMsg(t, evs[1], "")), "an event without a sequence cannot be checkpointed")
	require.NoError(t, k.Handle(message.NewMessage("junk", []byte("not an event"))), "undecodable envelopes are skipped")

	bad := evs[1]
	bad.Data = json.RawMessage(`{"peer":42}`)
	require.NoError(t, k.Handle(storedMsg(t, bad, "2")),
		"an event whose data can never decode is skipped, not retried forever in front of every room")

	for i, x := range evs[1:] {
		require.NoError(t, k.Handle(storedMsg(t, x, strconv.Itoa(i+3))))
	}
	r, err := projections.LoadRoom(t.Context(), e.kv, "r")
	require.NoError(t, err)
	require.Equal(t, uint64(len(evs)+1), r.LastSeq)
	require.Equal(t, []string{"cam2", "pub", "view"}, r.PeerIDs())
}

// TestLiveEqualsRebuild runs the whole path a node runs (Appender → EVENTS → durable consumer →
// watermill router → KVRunner → bucket) and requires the live bucket to equal a rebuild from
// the log byte for byte.
func TestLiveEqualsRebuild(t *testing.T) {
	e := start(t)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()

	subConn, err := e.srv.Connect("projection")
	require.NoError(t, err)
	t.Cleanup(subConn.Close)
	sub, err := eventlog.NewEventSubscriber(subConn, eventlog.EventSubscriberConfig{Durable: "rooms", Filter: eventlog.EventsSubjects,
		AckBatch: projections.KVAckBatch, MaxAckPending: 2 * projections.KVAckBatch})
	require.NoError(t, err)
	router, err := eventlog.NewRouter(nil)
	require.NoError(t, err)
	router.AddConsumerHandler("rooms", eventlog.EventsSubjects, sub, projections.NewKVRunner(e.kv, nil).Handle)
	done := make(chan error, 1)
	go func() { done <- router.Run(ctx) }()
	t.Cleanup(func() {
		require.NoError(t, router.Close())
		require.NoError(t, <-done)
	})
	<-router.Running()

	app := eventlog.NewAppender(e.js, "n1")
	var last uint64
	for _, room := range []string{"r1", "r2"} {
		for _, x := range withLeave(t) {
			x.ID, x.Room, x.Subject = events.NewID(), room, room
			last, err = app.Append(ctx, x)
			require.NoError(t, err)
		}
	}
	require.Eventually(t, func() bool {
		r, err := projections.LoadRoom(ctx, e.kv, "r2")
		return err == nil && r.LastSeq == last
	}, 30*time.Second, 20*time.Millisecond)

	n, err := projections.Rebuild(ctx, e.js, "rooms_rebuild", eventlog.StorageConfig{})
	require.NoError(t, err)
	require.Equal(t, 2*(len(withLeave(t))), n, "every event read once (room.created is in the sample)")
	rebuilt, err := e.js.KeyValue(ctx, "rooms_rebuild")
	require.NoError(t, err)
	live, err := projections.Snapshot(ctx, e.kv)
	require.NoError(t, err)
	want, err := projections.Snapshot(ctx, rebuilt)
	require.NoError(t, err)
	require.Equal(t, stringMap(want), stringMap(live))

	_, err = projections.Rebuild(ctx, e.js, eventlog.BucketRooms, eventlog.StorageConfig{})
	require.Error(t, err, "never rebuild into the live bucket")
}

func stringMap(m map[string][]byte) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range maps.All(m) {
		out[k] = string(v)
	}
	return out
}

func BenchmarkFold(b *testing.B) {
	r, err := projections.FoldAll("r", base(b))
	require.NoError(b, err)
	e := ev(b, 11, events.SubscriptionStarted{Peer: "view", Track: "c", Publisher: "cam2"})
	b.ReportAllocs()
	for b.Loop() {
		if _, err := projections.Fold(r, e); err != nil {
			b.Fatal(err)
		}
	}
}

// The runner keeps a room's state in memory only while someone is in it: a room whose peers
// all left is dropped from the cache, and its next event reads the record from the bucket.
func TestKVRunnerForgetsEmptyRooms(t *testing.T) {
	e := start(t)
	ctx := t.Context()
	k := projections.NewKVRunner(e.kv, nil)
	seq := uint64(0)
	next := func(room string, p events.Payload) events.Envelope {
		seq++
		x, err := events.New(events.Meta{Room: room, Actor: "a", Node: "n1", Time: time.Unix(int64(seq), 0).UTC()}, p)
		require.NoError(t, err)
		x.Seq = seq
		return x
	}
	for i := range 20 {
		room := "room" + strconv.Itoa(i)
		require.NoError(t, k.Apply(ctx, next(room, events.RoomCreated{Node: "n1"})))
		require.NoError(t, k.Apply(ctx, next(room, events.PeerJoined{Peer: "p", Transport: "whip", Role: "publisher", Node: "n1"})))
		require.NoError(t, k.Apply(ctx, next(room, events.TrackPublished{Peer: "p", Track: "t", Kind: "video", Codec: "video/VP8", ClockRate: 90000, Layers: []string{"0"}})))
	}
	require.Equal(t, 20, k.Cached())
	for i := range 20 {
		room := "room" + strconv.Itoa(i)
		require.NoError(t, k.Apply(ctx, next(room, events.TrackUnpublished{Peer: "p", Track: "t"})))
		require.NoError(t, k.Apply(ctx, next(room, events.NewPeerLeft("p", "closed"))))
	}
	require.Zero(t, k.Cached(), "rooms everyone left")

	// A room comes back to life from its record in the bucket.
	require.NoError(t, k.Apply(ctx, next("room3", events.PeerJoined{Peer: "q", Transport: "whep", Role: "viewer", Node: "n1"})))
	r, err := projections.LoadRoom(ctx, e.kv, "room3")
	require.NoError(t, err)
	require.Equal(t, seq, r.LastSeq)
	require.Len(t, r.Peers, 1)
	require.Equal(t, 1, k.Cached())
}

// TestLoadRoomCurrent: a read that must not act on a state the log has moved past waits for
// the projection to fold the room's newest event (a publisher that just left), and returns
// the lagging state, marked not current, when the projection does not get there in time.
func TestLoadRoomCurrent(t *testing.T) {
	e := start(t)
	ctx := t.Context()
	stream, err := e.js.Stream(ctx, eventlog.StreamEvents)
	require.NoError(t, err)
	r, current, err := projections.LoadRoomCurrent(ctx, e.kv, stream, "r", time.Second)
	require.NoError(t, err)
	require.True(t, current, "a room without events is current at once")
	require.False(t, r.Exists())

	app := eventlog.NewAppender(e.js, "n1")
	evs := withLeave(t)
	for _, x := range evs {
		x.ID, x.Room, x.Subject = events.NewID(), "r", "r"
		_, err = app.Append(ctx, x)
		require.NoError(t, err)
	}
	var stored []events.Envelope
	require.NoError(t, eventlog.Read(ctx, e.js, eventlog.ReadOptions{Filter: eventlog.RoomEventsFilter("r")}, func(x events.Envelope) error {
		stored = append(stored, x)
		return nil
	}))
	require.Len(t, stored, len(evs))
	k := projections.NewKVRunner(e.kv, nil)
	lag := len(stored) - 3 // the leave events not folded yet
	for _, x := range stored[:lag] {
		require.NoError(t, k.Apply(ctx, x))
	}
	r, current, err = projections.LoadRoomCurrent(ctx, e.kv, stream, "r", 50*time.Millisecond)
	require.NoError(t, err)
	require.False(t, current, "the bucket lags the log")
	require.Equal(t, stored[lag-1].Seq, r.LastSeq)
	require.Contains(t, r.Peers, "pub", "the lagging state still has the publisher that left")

	folded := make(chan error, 1)
	go func() {
		time.Sleep(100 * time.Millisecond)
		for _, x := range stored[lag:] {
			if err := k.Apply(ctx, x); err != nil {
				folded <- err
				return
			}
		}
		folded <- nil
	}()
	r, current, err = projections.LoadRoomCurrent(ctx, e.kv, stream, "r", 10*time.Second)
	require.NoError(t, err)
	require.NoError(t, <-folded)
	require.True(t, current)
	require.Equal(t, stored[len(stored)-1].Seq, r.LastSeq)
	require.NotContains(t, r.Peers, "pub", "read once the publisher's leave is folded")
}
