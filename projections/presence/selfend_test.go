package presence_test

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/events"
	"github.com/jetmedia/jetmedia/pipeline/eventlog"
	"github.com/jetmedia/jetmedia/projections"
	"github.com/jetmedia/jetmedia/projections/presence"
)

func TestEndedInLog(t *testing.T) {
	r, err := projections.FoldAll("r", twoNodeRoom(t)) // p joined at 2, v at 5, w at 7; folded to 8
	require.NoError(t, err)
	gone := presence.LocalSession{ID: "gone", Room: "r", JoinSeq: 3}
	cases := []struct {
		name    string
		session presence.LocalSession
		ended   bool
	}{
		{"in the bucket", presence.LocalSession{ID: "p", Room: "r", JoinSeq: 2}, false},
		{"absent from a bucket past its join", gone, true},
		{"absent from a bucket at its join", presence.LocalSession{ID: "gone", Room: "r", JoinSeq: 8}, true},
		{"absent from a bucket that lags its join", presence.LocalSession{ID: "new", Room: "r", JoinSeq: 9}, false},
		{"join not in the log", presence.LocalSession{ID: "new", Room: "r"}, false},
		{"of another room", presence.LocalSession{ID: "gone", Room: "other", JoinSeq: 3}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := presence.EndedInLog(r, []presence.LocalSession{c.session})
			require.Equal(t, c.ended, len(got) == 1)
		})
	}
}

// sessionList is a node's live sessions as presence.SelfEnd sees them: a list, and the ids
// it was told to end.
type sessionList struct {
	mu     sync.Mutex
	live   []presence.LocalSession
	ended  []string
	rounds int // calls of Joined: rounds that looked at the sessions
}

func (l *sessionList) Joined() []presence.LocalSession {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.rounds++
	return slices.Clone(l.live)
}

func (l *sessionList) counts() (rounds int, ended []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.rounds, slices.Clone(l.ended)
}

func (l *sessionList) EndedInLog(id string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	i := slices.IndexFunc(l.live, func(s presence.LocalSession) bool { return s.ID == id })
	if i < 0 {
		return false
	}
	l.live = slices.Delete(l.live, i, i+1)
	l.ended = append(l.ended, id)
	return true
}

// TestSelfEndWaitsForTheBucket: node x's sessions p and w are ended in the log by a survivor
// (End, as a lapse of x's lease does) while x still serves them, and x has a third session q
// whose join the rooms bucket has not folded yet. While the bucket lags the survivor's
// events, x ends nothing (p and w are still in it; q is absent only because the bucket has
// not seen it come); once the bucket has folded them, x ends p and w, and still not q.
func TestSelfEndWaitsForTheBucket(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	js, rooms, _ := startLog(ctx, t, "selfend-test")
	runner := projections.NewKVRunner(rooms, nil)
	folded := uint64(0)
	fold := func() {
		require.NoError(t, eventlog.Read(ctx, js, eventlog.ReadOptions{Filter: eventlog.EventsSubjects, FromSeq: folded + 1}, func(e events.Envelope) error {
			folded = e.Seq
			return runner.Apply(ctx, e)
		}))
	}
	x := eventlog.NewAppender(js, "x")
	_, err := x.Append(ctx, twoNodeRoom(t)[1:]...)
	require.NoError(t, err)
	fold()
	q, err := events.New(events.Meta{Room: "r", Actor: "x", Node: "x", Time: t0.Add(time.Minute)},
		events.PeerJoined{Peer: "q", Transport: events.TransportWHIP, Role: "publisher", Node: "x"})
	require.NoError(t, err)
	qSeq, err := x.Append(ctx, q)
	require.NoError(t, err)

	lost := func(_ projections.Room, node string) bool { return node == "x" }
	ending := func(string) presence.Ending {
		return presence.Ending{By: "s1", Detail: "node x lost: lease expired", Time: time.Now()}
	}
	n, err := presence.End(ctx, rooms, eventlog.NewAppender(js, "s1"), lost, ending)
	require.NoError(t, err)
	require.Equal(t, 2, n, "p and w ended in the log")

	sessions := &sessionList{live: []presence.LocalSession{
		{ID: "p", Room: "r", Transport: events.TransportWHIP, JoinSeq: 4},
		{ID: "w", Room: "r", Transport: events.TransportWHEP, JoinSeq: 8},
		{ID: "q", Room: "r", Transport: events.TransportWHIP, JoinSeq: qSeq},
	}}
	self := &presence.SelfEnd{Rooms: rooms, Sessions: sessions}
	require.Zero(t, self.Check(ctx), "a bucket that lags the log ends nobody")
	require.Len(t, sessions.Joined(), 3)

	fold()
	require.Equal(t, 2, self.Check(ctx))
	require.Equal(t, []string{"p", "w"}, sessions.ended)
	require.Equal(t, []string{"q"}, []string{sessions.Joined()[0].ID})
	require.Zero(t, self.Check(ctx), "nothing more")
}

// TestSelfEndLooksOnlyWhenSuspected: a node whose lease lapsed in the others' eyes may have
// been taken for lost; until it is told so (Suspect), the rounds read nothing, however many
// writes there are. Told, the first round reads every room with a local session and ends the
// sessions the log ended; later rounds read only the rooms written since the last (a write of
// a room without local sessions reads nothing), and once the window has passed, writes are
// not even kept.
func TestSelfEndLooksOnlyWhenSuspected(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	js, rooms, _ := startLog(ctx, t, "selfend-run")
	_, err := eventlog.NewAppender(js, "x").Append(ctx, twoNodeRoom(t)[1:]...)
	require.NoError(t, err)
	lost := func(_ projections.Room, node string) bool { return node == "x" }
	ending := func(string) presence.Ending {
		return presence.Ending{By: "s1", Detail: "node x lost: lease expired", Time: time.Now()}
	}
	runner := projections.NewKVRunner(rooms, nil)
	fold := func() {
		require.NoError(t, eventlog.Read(ctx, js, eventlog.ReadOptions{Filter: eventlog.EventsSubjects}, func(e events.Envelope) error {
			return runner.Apply(ctx, e)
		}))
	}
	fold()
	_, err = presence.End(ctx, rooms, eventlog.NewAppender(js, "s1"), lost, ending)
	require.NoError(t, err)
	fold()

	sessions := &sessionList{live: []presence.LocalSession{
		{ID: "p", Room: "r", Transport: events.TransportWHIP, JoinSeq: 4},
		{ID: "w", Room: "r", Transport: events.TransportWHEP, JoinSeq: 8},
		{ID: "o", Room: "other", Transport: events.TransportWHEP, JoinSeq: 8},
	}}
	self := &presence.SelfEnd{Rooms: rooms, Sessions: sessions}
	rctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		self.Run(rctx, 100*time.Millisecond)
	}()
	defer func() { stop(); <-done }()

	self.Written("r", 12)
	time.Sleep(500 * time.Millisecond) // five rounds, not suspected
	rounds, ended := sessions.counts()
	require.Zero(t, rounds, "not suspected: no round, whatever is written")
	require.Empty(t, ended)

	now := time.Now()
	self.Suspect(now, now.Add(time.Second))
	require.Eventually(t, func() bool { _, e := sessions.counts(); return len(e) == 2 }, 5*time.Second, 5*time.Millisecond,
		"the first round of a window reads every room with a local session")
	rounds, _ = sessions.counts()
	time.Sleep(300 * time.Millisecond)
	after, _ := sessions.counts()
	require.Equal(t, rounds, after, "no round while nothing is written")

	self.Written("elsewhere", 1)
	require.Eventually(t, func() bool { r, _ := sessions.counts(); return r > after }, 5*time.Second, 5*time.Millisecond,
		"a write in the window has a round")
	_, ended = sessions.counts()
	require.Equal(t, []string{"p", "w"}, ended, "a room without local sessions ends nothing")

	time.Sleep(time.Until(now.Add(time.Second + 100*time.Millisecond)))
	rounds, _ = sessions.counts()
	self.Written("other", 99)
	time.Sleep(300 * time.Millisecond)
	after, _ = sessions.counts()
	require.Equal(t, rounds, after, "the window has passed: writes have no round")
}

// TestSelfEndRereadsALaggingRecord: a write the watch told of at a bucket sequence the read
// does not reach (a replica that lags) is read again next round, until the read reaches it.
func TestSelfEndRereadsALaggingRecord(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	js, rooms, _ := startLog(ctx, t, "selfend-lag")
	_, err := eventlog.NewAppender(js, "x").Append(ctx, twoNodeRoom(t)[1:]...)
	require.NoError(t, err)
	runner := projections.NewKVRunner(rooms, nil)
	require.NoError(t, eventlog.Read(ctx, js, eventlog.ReadOptions{Filter: eventlog.EventsSubjects}, func(e events.Envelope) error {
		return runner.Apply(ctx, e)
	}))
	rec, err := rooms.Get(ctx, projections.RoomKey("r"))
	require.NoError(t, err)
	sessions := &sessionList{live: []presence.LocalSession{{ID: "p", Room: "r", Transport: events.TransportWHIP, JoinSeq: 4}}}
	self := &presence.SelfEnd{Rooms: rooms, Sessions: sessions}
	rctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		self.Run(rctx, 50*time.Millisecond)
	}()
	defer func() { stop(); <-done }()
	now := time.Now()
	self.Suspect(now, now.Add(time.Minute))
	require.Eventually(t, func() bool { r, _ := sessions.counts(); return r >= 1 }, 5*time.Second, 5*time.Millisecond)
	self.Written("r", rec.Revision()+1000) // told of a write the bucket does not hold
	require.Eventually(t, func() bool { r, _ := sessions.counts(); return r >= 4 }, 5*time.Second, 5*time.Millisecond,
		"read again every round while the read lags the write")
	_, ended := sessions.counts()
	require.Empty(t, ended, "p is in the room")
}
