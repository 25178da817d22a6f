package eventlog_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/events"
	"github.com/jetmedia/jetmedia/pipeline/eventlog"
	"github.com/jetmedia/jetmedia/pipeline/natsnode"
)

func TestAppendCreatesRoom(t *testing.T) {
	n := start(t)
	ctx := t.Context()
	a := eventlog.NewAppender(n.js, "n1")

	last, err := a.LastSeq(ctx, "r")
	require.NoError(t, err)
	require.Zero(t, last, "a room without events")

	e := joined(t, "r", "p1")
	seq, err := a.Append(ctx, e)
	require.NoError(t, err)
	require.Equal(t, uint64(2), seq)

	got := readRoom(t, n.js, "r")
	require.Equal(t, []string{events.TypeRoomCreated, events.TypePeerJoined}, types(got))
	created := got[0]
	require.Equal(t, "room-created-r", created.ID)
	require.Equal(t, "room-created-r", eventlog.RoomCreatedID("r", ""))
	require.Equal(t, "room-created-r@edge-x", eventlog.RoomCreatedID("r", "edge-x"), "an edge's own room.created is not the region's")
	require.Equal(t, e.ID, created.CausationID)
	require.Equal(t, "system", created.Actor)
	p, err := created.Payload()
	require.NoError(t, err)
	require.Equal(t, events.RoomCreated{Node: "n1"}, p)
	require.Equal(t, e.ID, got[1].ID)
	require.Equal(t, []uint64{1, 2}, []uint64{got[0].Seq, got[1].Seq})

	// Only the first append creates the room.
	_, err = a.Append(ctx, joined(t, "r", "p2"))
	require.NoError(t, err)
	require.Equal(t, []string{events.TypeRoomCreated, events.TypePeerJoined, events.TypePeerJoined}, types(readRoom(t, n.js, "r")))

	// An explicit room.created first is not doubled.
	c, err := events.New(events.Meta{Room: "s", Node: "n1"}, events.RoomCreated{Node: "n1"})
	require.NoError(t, err)
	_, err = a.Append(ctx, c, joined(t, "s", "p1"))
	require.NoError(t, err)
	require.Equal(t, []string{events.TypeRoomCreated, events.TypePeerJoined}, types(readRoom(t, n.js, "s")))
	requireIntact(t, n.js, "r", 3)
	requireIntact(t, n.js, "s", 2)
}

func TestAppendOrderAndSubjects(t *testing.T) {
	n := start(t)
	ctx := t.Context()
	a := eventlog.NewAppender(n.js, "n1")
	var want []string
	for batch := range 4 {
		var evs []events.Envelope
		for i := range batch + 1 {
			evs = append(evs, joined(t, "r", fmt.Sprintf("p%d-%d", batch, i)))
		}
		want = append(want, ids(evs)...)
		_, err := a.Append(ctx, evs...)
		require.NoError(t, err)
	}
	got := readRoom(t, n.js, "r")
	require.Equal(t, want, ids(got[1:]))

	msg, err := n.js.Stream(ctx, eventlog.StreamEvents)
	require.NoError(t, err)
	last, err := msg.GetLastMsgForSubject(ctx, eventlog.EventSubject("r", "peer_joined"))
	require.NoError(t, err, "stored under ev.<room>.<kind>")
	require.Equal(t, got[len(got)-1].Seq, last.Sequence)
	require.Equal(t, got[len(got)-1].ID, last.Header.Get("Nats-Msg-Id"))
}

func TestAppendRejectsMixedRooms(t *testing.T) {
	n := start(t)
	a := eventlog.NewAppender(n.js, "n1")
	_, err := a.Append(t.Context(), joined(t, "r", "p"), joined(t, "s", "p"))
	require.Error(t, err)
	require.Empty(t, readRoom(t, n.js, "r"))
	seq, err := a.Append(t.Context())
	require.NoError(t, err)
	require.Zero(t, seq)
}

func TestAppendDedupesByID(t *testing.T) {
	n := start(t)
	ctx := t.Context()
	a := eventlog.NewAppender(n.js, "n1")
	e1, e2 := joined(t, "r", "p1"), joined(t, "r", "p2")
	_, err := a.Append(ctx, e1)
	require.NoError(t, err)
	_, err = a.Append(ctx, e1) // retried at once
	require.NoError(t, err)
	_, err = a.Append(ctx, e2)
	require.NoError(t, err)
	_, err = a.Append(ctx, e1, e2) // retried after the room moved on
	require.NoError(t, err)
	// A retry from a restarted writer, which knows nothing of the room's head.
	seq, err := eventlog.NewAppender(n.js, "n1").Append(ctx, e2)
	require.NoError(t, err)
	require.Equal(t, uint64(3), seq)

	got := readRoom(t, n.js, "r")
	require.Equal(t, []string{"room-created-r", e1.ID, e2.ID}, ids(got))

	// After duplicates the appender still knows the head: the next append succeeds at once.
	e3 := joined(t, "r", "p3")
	seq, err = a.Append(ctx, e3)
	require.NoError(t, err)
	require.Equal(t, uint64(4), seq)
	requireIntact(t, n.js, "r", 4)
}

// Two nodes appending to one room at once: both succeed, the room is created once, and each
// node's events are all there, each node's in its own order.
func TestAppendTwoNodesConcurrently(t *testing.T) {
	n := start(t)
	ctx := t.Context()
	const perNode = 40
	nodes := []*eventlog.Appender{
		eventlog.NewAppender(connect(t, n.srv, "node-a"), "a"),
		eventlog.NewAppender(connect(t, n.srv, "node-b"), "b"),
	}
	sent := make([][]string, len(nodes))
	var wg sync.WaitGroup
	errs := make(chan error, len(nodes)*perNode)
	for i, a := range nodes {
		sent[i] = make([]string, perNode)
		wg.Go(func() {
			for j := range perNode {
				e := joined(t, "r", fmt.Sprintf("n%d-p%d", i, j))
				sent[i][j] = e.ID
				evs := []events.Envelope{e}
				if j%5 == 4 { // some batches of two
					e2 := joined(t, "r", fmt.Sprintf("n%d-p%d-b", i, j))
					evs = append(evs, e2)
				}
				if _, err := a.Append(ctx, evs...); err != nil {
					errs <- err
					return
				}
				if len(evs) == 2 {
					sent[i] = append(sent[i], evs[1].ID)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}

	got := readRoom(t, n.js, "r")
	require.Equal(t, events.TypeRoomCreated, got[0].Type)
	seen := map[string]int{}
	for i, e := range got {
		seen[e.ID]++
		require.Equal(t, 1, seen[e.ID], "event %s stored twice", e.ID)
		if i > 0 {
			require.NotEqual(t, events.TypeRoomCreated, e.Type, "room created twice")
			require.Greater(t, e.Seq, got[i-1].Seq)
		}
	}
	pos := map[string]int{}
	for i, e := range got {
		pos[e.ID] = i
	}
	total := 1
	for i := range nodes {
		total += len(sent[i])
		for _, id := range sent[i] {
			require.Contains(t, pos, id, "node %d's event %s is missing", i, id)
		}
	}
	require.Len(t, got, total)
	// Each node's single-event appends keep their order.
	for i := range nodes {
		prev := -1
		for j := range perNode {
			p := pos[sent[i][j]]
			require.Greater(t, p, prev, "node %d event %d out of order", i, j)
			prev = p
		}
	}
	requireIntact(t, n.js, "r", total)
}

func TestAppendExpect(t *testing.T) {
	n := start(t)
	ctx := t.Context()
	a := eventlog.NewAppender(n.js, "n1")
	head, err := a.Append(ctx, joined(t, "r", "p1"))
	require.NoError(t, err)

	// Another node moves the room on.
	other := eventlog.NewAppender(n.js, "n2")
	_, err = other.Append(ctx, joined(t, "r", "p2"))
	require.NoError(t, err)
	before := ids(readRoom(t, n.js, "r"))

	stale := joined(t, "r", "p3")
	_, err = a.AppendExpect(ctx, head, stale, joined(t, "r", "p4"))
	require.ErrorIs(t, err, eventlog.ErrConflict)
	require.Equal(t, before, ids(readRoom(t, n.js, "r")), "nothing written on conflict")

	_, err = a.AppendExpect(ctx, head+5, stale)
	require.ErrorIs(t, err, eventlog.ErrConflict, "an expected head from the future conflicts too")

	cur, err := a.LastSeq(ctx, "r")
	require.NoError(t, err)
	seq, err := a.AppendExpect(ctx, cur, stale)
	require.NoError(t, err)
	require.Equal(t, cur+1, seq)
	require.Equal(t, append(before, stale.ID), ids(readRoom(t, n.js, "r")))

	// The appender's own head stays right after an AppendExpect conflict.
	_, err = a.Append(ctx, joined(t, "r", "p5"))
	require.NoError(t, err)

	seq, err = a.AppendExpect(ctx, 77)
	require.NoError(t, err)
	require.Equal(t, uint64(77), seq, "nothing to append")
	requireIntact(t, n.js, "r", 5)
}

// Appends to one room don't conflict with appends to another: the expected sequence is per room.
func TestAppendRoomsIndependent(t *testing.T) {
	n := start(t)
	ctx := t.Context()
	a, b := eventlog.NewAppender(n.js, "a"), eventlog.NewAppender(n.js, "b")
	headR, err := a.Append(ctx, joined(t, "r", "p"))
	require.NoError(t, err)
	_, err = b.Append(ctx, joined(t, "s", "p"))
	require.NoError(t, err)
	_, err = a.AppendExpect(ctx, headR, joined(t, "r", "q"))
	require.NoError(t, err, "room s's events do not move room r's head")
}

func BenchmarkAppend(b *testing.B) {
	n := start(b)
	ctx := context.Background()
	a := eventlog.NewAppender(n.js, "n1")
	_, err := a.Append(ctx, joined(b, "r", "warm"))
	require.NoError(b, err)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := a.Append(ctx, joined(b, "r", "p")); err != nil {
			b.Fatal(err)
		}
	}
}

// The appender forgets the heads of rooms it has not written for the idle period, and reads a
// forgotten room's head again on its next append: memory follows the rooms in use, and the
// chain stays intact although another writer moved the room on meanwhile.
func TestAppenderForgetsIdleHeads(t *testing.T) {
	n := start(t)
	ctx := t.Context()
	var mu sync.Mutex
	now := t0
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); defer mu.Unlock(); now = now.Add(d) }
	a := eventlog.NewAppender(n.js, "n1", eventlog.WithHeadIdle(time.Minute), eventlog.WithClock(clock))
	for i := range 50 {
		_, err := a.Append(ctx, joined(t, fmt.Sprintf("room%d", i), "p"))
		require.NoError(t, err)
	}
	require.Equal(t, 50, a.Heads())

	advance(30 * time.Second)
	_, err := a.Append(ctx, joined(t, "room0", "q"))
	require.NoError(t, err)
	require.Equal(t, 50, a.Heads(), "not idle long enough")

	// Another node writes to room7 while a remembers nothing of it.
	advance(40 * time.Second)
	_, err = eventlog.NewAppender(n.js, "n2").Append(ctx, joined(t, "room7", "other"))
	require.NoError(t, err)
	_, err = a.Append(ctx, joined(t, "room0", "r"))
	require.NoError(t, err)
	require.Equal(t, 1, a.Heads(), "only room0 was written within the minute")

	seq, err := a.Append(ctx, joined(t, "room7", "back"))
	require.NoError(t, err)
	require.Equal(t, 2, a.Heads())
	got := readRoom(t, n.js, "room7")
	require.Equal(t, got[len(got)-1].Seq, seq)
	requireIntact(t, n.js, "room7", 4)
	requireIntact(t, n.js, "room0", 4)
}

// A rooms bucket declared before removed keys' markers expired (no LimitMarkerTTL) is
// updated in place by Declare on the next start.
func TestDeclareUpgradesRoomsBucket(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv, err := natsnode.StartServer(ctx, natsnode.ServerConfig{Name: "upgrade", JetStream: true, StoreDir: t.TempDir()})
	require.NoError(t, err)
	t.Cleanup(srv.Shutdown)
	nc, err := srv.Connect("old")
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	old := eventlog.RoomsBucketConfig(eventlog.BucketRooms, eventlog.StorageConfig{})
	old.LimitMarkerTTL = 0
	kv, err := js.CreateKeyValue(ctx, old)
	require.NoError(t, err)
	_, err = kv.Put(ctx, "r.peer.p", []byte("{}"))
	require.NoError(t, err)

	require.NoError(t, eventlog.Declare(ctx, js, eventlog.StorageConfig{}))
	kv, err = js.KeyValue(ctx, eventlog.BucketRooms)
	require.NoError(t, err)
	st, err := kv.Status(ctx)
	require.NoError(t, err)
	require.Equal(t, eventlog.RoomsMarkerTTL, st.LimitMarkerTTL())
	require.NoError(t, kv.Purge(ctx, "r.peer.p", jetstream.PurgeTTL(eventlog.RoomsMarkerTTL)))
	_, err = kv.Get(ctx, "r.peer.p")
	require.ErrorIs(t, err, jetstream.ErrKeyNotFound)
}
