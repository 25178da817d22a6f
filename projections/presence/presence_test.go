package presence_test

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/events"
	"github.com/jetmedia/jetmedia/pipeline/eventlog"
	"github.com/jetmedia/jetmedia/pipeline/natsnode"
	"github.com/jetmedia/jetmedia/projections"
	"github.com/jetmedia/jetmedia/projections/presence"
	"github.com/jetmedia/jetmedia/tests/leasefault"
)

var t0 = time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)

func ev(t *testing.T, room string, seq uint64, p events.Payload) events.Envelope {
	t.Helper()
	e, err := events.New(events.Meta{Room: room, Actor: "x", Node: "x", Time: t0.Add(time.Duration(seq) * time.Second)}, p)
	require.NoError(t, err)
	e.Seq = seq
	return e
}

// twoNodeRoom: publisher p on node x with two tracks, viewer v on node y playing one of them,
// viewer w on x playing the other.
func twoNodeRoom(t *testing.T) []events.Envelope {
	return []events.Envelope{
		ev(t, "r", 1, events.RoomCreated{Node: "x"}),
		ev(t, "r", 2, events.PeerJoined{Peer: "p", Transport: events.TransportWHIP, Role: "publisher", Node: "x"}),
		ev(t, "r", 3, events.TrackPublished{Peer: "p", Track: "ta", Kind: "audio", Codec: "audio/opus", Layers: []string{"0"}}),
		ev(t, "r", 4, events.TrackPublished{Peer: "p", Track: "tv", Kind: "video", Codec: "video/VP8", Layers: []string{"0"}}),
		ev(t, "r", 5, events.PeerJoined{Peer: "v", Transport: events.TransportWHEP, Role: "viewer", Node: "y"}),
		ev(t, "r", 6, events.SubscriptionStarted{Peer: "v", Track: "tv", Publisher: "p"}),
		ev(t, "r", 7, events.PeerJoined{Peer: "w", Transport: events.TransportWHEP, Role: "viewer", Node: "x"}),
		ev(t, "r", 8, events.SubscriptionStarted{Peer: "w", Track: "ta", Publisher: "p"}),
	}
}

func TestEndSessions(t *testing.T) {
	r, err := projections.FoldAll("r", twoNodeRoom(t))
	require.NoError(t, err)

	got, err := presence.EndSessions(r, "x", presence.Ending{By: "y", Detail: "node x lost: lease expired", Time: t0.Add(time.Hour)})
	require.NoError(t, err)
	var kinds []string
	for _, e := range got {
		kinds = append(kinds, e.Type)
		require.Equal(t, "y", e.Node, "written by the survivor")
		require.True(t, events.ValidID(e.ID), e.ID)
	}
	require.Equal(t, []string{events.TypeTrackUnpublished, events.TypeTrackUnpublished, events.TypePeerLeft,
		events.TypeSubscriptionEnded, events.TypePeerLeft}, kinds, "p's tracks then p, w's subscription then w; nothing of y's v")
	p, err := got[2].Payload()
	require.NoError(t, err)
	require.Equal(t, events.PeerLeft{Peer: "p", Reason: events.ReasonNodeLost,
		Cause: events.LeaveCause{By: events.ByServer, Detail: "node x lost: lease expired"}}, p)

	// Another writer (another survivor, or x restarting) derives the same ids.
	again, err := presence.EndSessions(r, "x", presence.Ending{By: "x", Detail: "node x restarted", Time: t0.Add(2 * time.Hour)})
	require.NoError(t, err)
	for i := range got {
		require.Equal(t, got[i].ID, again[i].ID)
	}

	// A restarted x ends only the sessions that joined before it started (p at 2 s, w at 7 s).
	older, err := presence.EndSessions(r, "x", presence.Ending{By: "x", Time: t0.Add(time.Hour), Before: t0.Add(5 * time.Second)})
	require.NoError(t, err)
	require.Len(t, older, 3, "p's two tracks and p; not w, which joined the new process")

	// Folded in, they leave only y's viewer, without the subscription to the lost track.
	for i := range got {
		got[i].Seq = uint64(9 + i)
		r, err = projections.Fold(r, got[i])
		require.NoError(t, err)
	}
	require.Equal(t, []string{"v"}, r.PeerIDs())
	require.Empty(t, r.Tracks)
	require.Empty(t, r.Subs)

	none, err := presence.EndSessions(r, "x", presence.Ending{By: "y"})
	require.NoError(t, err)
	require.Empty(t, none, "nothing left to end")
}

// entry is a KV entry as a reader gets it.
type entry struct {
	key     string
	value   []byte
	rev     uint64
	created time.Time
}

func (e entry) Bucket() string                  { return presence.BucketNodes }
func (e entry) Key() string                     { return e.key }
func (e entry) Value() []byte                   { return e.value }
func (e entry) Revision() uint64                { return e.rev }
func (e entry) Created() time.Time              { return e.created }
func (e entry) Delta() uint64                   { return 0 }
func (e entry) Operation() jetstream.KeyValueOp { return jetstream.KeyValuePut }

func lease(t *testing.T, name string, rev uint64, created time.Time) jetstream.KeyValueEntry {
	b, err := json.Marshal(presence.Lease{Name: name, TTL: 3 * time.Second})
	require.NoError(t, err)
	return entry{key: name, value: b, rev: rev, created: created}
}

// TestTableAgesFromWhatItSaw: a lease's age runs from when the reader saw its revision change,
// whatever the writer's clock; a record seen first is aged from when the bucket stored it.
func TestTableAgesFromWhatItSaw(t *testing.T) {
	tab := presence.NewTable()
	now := t0
	got, err := tab.Observe(now, []jetstream.KeyValueEntry{lease(t, "b", 5, now.Add(-time.Hour)), lease(t, "a", 7, now.Add(-time.Second))})
	require.NoError(t, err)
	require.Equal(t, "a", got[0].Name, "sorted by name")
	require.Equal(t, time.Second, got[0].Age)
	require.False(t, got[0].Expired())
	require.True(t, got[1].Expired(), "b's record is an hour old")

	now = now.Add(2 * time.Second) // a renewed (new revision), b did not
	got, err = tab.Observe(now, []jetstream.KeyValueEntry{lease(t, "b", 5, t0.Add(-time.Hour)), lease(t, "a", 8, t0.Add(-time.Hour))})
	require.NoError(t, err)
	require.Zero(t, got[0].Age, "a renewed: its age restarts now, whatever the entry's time says")
	require.True(t, got[1].Expired())

	now = now.Add(4 * time.Second)
	got, err = tab.Observe(now, []jetstream.KeyValueEntry{lease(t, "a", 8, t0)})
	require.NoError(t, err)
	require.Len(t, got, 1)
	require.Equal(t, 4*time.Second, got[0].Age)
	require.True(t, got[0].Expired(), "a stopped renewing")

	// The bucket stalled (the reader's own renewal failed): the silence is forgiven.
	tab.Forgive(now)
	got, err = tab.Observe(now.Add(time.Second), []jetstream.KeyValueEntry{lease(t, "a", 8, t0)})
	require.NoError(t, err)
	require.Equal(t, time.Second, got[0].Age)
	require.False(t, got[0].Expired())
}

// startLog starts a real server named name with the log, the rooms bucket and the nodes bucket
// declared; the server and the connection end with the test.
func startLog(ctx context.Context, t *testing.T, name string) (jetstream.JetStream, jetstream.KeyValue, jetstream.KeyValue) {
	t.Helper()
	srv, err := natsnode.StartServer(ctx, natsnode.ServerConfig{Name: name, JetStream: true, StoreDir: t.TempDir()})
	require.NoError(t, err)
	t.Cleanup(srv.Shutdown)
	nc, err := srv.Connect("test")
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	require.NoError(t, eventlog.Declare(ctx, js, eventlog.StorageConfig{}))
	rooms, err := js.KeyValue(ctx, eventlog.BucketRooms)
	require.NoError(t, err)
	nodes, err := presence.Declare(ctx, js, eventlog.StorageConfig{})
	require.NoError(t, err)
	return js, rooms, nodes
}

// TestLostNodeEndedOnce: two presences on one real server watch node x's lease, which nobody
// renews; the rooms bucket shows x's publisher and viewer. Their sessions are ended in the log
// once.
func TestLostNodeEndedOnce(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	js, rooms, nodes := startLog(ctx, t, "presence-test")

	// The log and the bucket as x left them.
	app := eventlog.NewAppender(js, "x")
	_, err := app.Append(ctx, twoNodeRoom(t)[1:]...)
	require.NoError(t, err)
	fold := func() {
		runner := projections.NewKVRunner(rooms, nil)
		require.NoError(t, eventlog.Read(ctx, js, eventlog.ReadOptions{Filter: eventlog.EventsSubjects}, func(e events.Envelope) error {
			return runner.Apply(ctx, e)
		}))
	}
	fold()
	b, err := json.Marshal(presence.Lease{Name: "x", TTL: time.Second})
	require.NoError(t, err)
	_, err = nodes.Put(ctx, "x", b)
	require.NoError(t, err)

	timing := presence.Timing{Renew: 100 * time.Millisecond, TTL: time.Second, Recheck: time.Minute}
	for _, name := range []string{"s1", "s2"} { // survivors; y, v's node, holds no lease: untouched
		p, err := presence.Start(ctx, presence.Config{Nodes: nodes, Rooms: rooms, Appender: eventlog.NewAppender(js, name),
			Describe: func() presence.Lease { return presence.Lease{Name: name} }, Timing: timing})
		require.NoError(t, err)
		defer func() { require.NoError(t, p.Close()) }()
	}
	lefts := func() int {
		n := 0
		require.NoError(t, eventlog.Read(ctx, js, eventlog.ReadOptions{Filter: eventlog.RoomEventsFilter("r")}, func(e events.Envelope) error {
			if e.Type == events.TypePeerLeft {
				n++
			}
			return nil
		}))
		return n
	}
	require.Eventually(t, func() bool { return lefts() == 2 }, 10*time.Second, 20*time.Millisecond, "p and w ended")
	fold()
	time.Sleep(10 * timing.Renew) // both presences keep checking
	require.Equal(t, 2, lefts(), "ended once")
	r, err := projections.LoadRoom(ctx, rooms, "r")
	require.NoError(t, err)
	require.Equal(t, []string{"v"}, r.PeerIDs())
}

// TestLapsedWhenRenewalsFail: a node whose renewals are refused is told, once the last stored
// renewal started longer ago than the TTL less a renewal period, that the others may have
// taken it for lost (Lapsed), at each renewal while that holds; not before, and not once
// renewals are stored again.
func TestLapsedWhenRenewalsFail(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	js, rooms, nodes := startLog(ctx, t, "lapse-test")
	var mu sync.Mutex
	var lapses []time.Time
	timing := presence.Timing{Renew: 100 * time.Millisecond, TTL: time.Second, Recheck: time.Minute}
	p, err := presence.Start(ctx, presence.Config{Nodes: nodes, Rooms: rooms, Appender: eventlog.NewAppender(js, "n"),
		Describe: func() presence.Lease { return presence.Lease{Name: "n"} }, Timing: timing,
		Lapsed: func(now time.Time) { mu.Lock(); lapses = append(lapses, now); mu.Unlock() }})
	require.NoError(t, err)
	defer func() { require.NoError(t, p.Close()) }()
	count := func() int { mu.Lock(); defer mu.Unlock(); return len(lapses) }

	time.Sleep(5 * timing.TTL / 4)
	require.Zero(t, count(), "renewals stored on time: no lapse")

	restore := leasefault.Refuse(ctx, t, js)
	refused := time.Now()
	require.Eventually(t, func() bool { return count() >= 2 }, 5*time.Second, 10*time.Millisecond, "lapsed, at each renewal")
	mu.Lock()
	first := lapses[0]
	mu.Unlock()
	require.GreaterOrEqual(t, first.Sub(refused), timing.TTL-2*timing.Renew, "not before the lease could have lapsed")
	t.Logf("renewals refused -> first lapse told: %v (TTL %v, renew %v)", first.Sub(refused).Round(time.Millisecond), timing.TTL, timing.Renew)

	restore()
	require.Eventually(t, func() bool {
		e, err := nodes.Get(ctx, "n")
		return err == nil && time.Since(e.Created()) < timing.Renew
	}, 5*time.Second, 10*time.Millisecond, "renewals stored again")
	time.Sleep(3 * timing.Renew)
	n := count()
	time.Sleep(5 * timing.Renew)
	require.Equal(t, n, count(), "renewals on time again: no more lapses")
}
