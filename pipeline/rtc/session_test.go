package rtc_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/events"
	"github.com/jetmedia/jetmedia/pipeline/rtc"
)

// logbook is an in-memory event log: it keeps what sessions append, in order, and can hold
// appends (a slow JetStream) or refuse them (a full disk).
type logbook struct {
	mu   sync.Mutex
	evs  []events.Envelope
	hold chan struct{} // appends wait for it to close, when set
	fail error
}

func (l *logbook) Append(ctx context.Context, evs ...events.Envelope) (uint64, error) {
	l.mu.Lock()
	hold, fail := l.hold, l.fail
	l.mu.Unlock()
	if hold != nil {
		select {
		case <-hold:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
	if fail != nil {
		return 0, fail
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.evs = append(l.evs, evs...)
	return uint64(len(l.evs)), nil
}

// types lists the recorded event types of session peer, in order.
func (l *logbook) types(peer string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, e := range l.evs {
		p, err := e.Payload()
		if err != nil {
			panic(err)
		}
		switch v := p.(type) {
		case events.PeerJoined:
			if v.Peer == peer {
				out = append(out, "joined")
			}
		case events.PeerLeft:
			if v.Peer == peer {
				out = append(out, "left:"+v.Reason)
			}
		case events.TrackUnpublished:
			if v.Peer == peer {
				out = append(out, "unpublished:"+v.Track)
			}
		}
	}
	return out
}

// world is a registry on a logbook, inside a synctest bubble (fake time, every goroutine
// accounted for).
type world struct {
	t    *testing.T
	log  *logbook
	reg  *rtc.Registry
	plis chan string
}

func newWorld(t *testing.T) *world {
	w := &world{t: t, log: &logbook{}, plis: make(chan string, 16)}
	var err error
	w.reg, err = rtc.NewRegistry(rtc.RegistryConfig{Appender: w.log, Node: "n1"})
	require.NoError(t, err)
	return w
}

// start opens and answers a session with a lifecycle core whose end unpublishes "cam".
func (w *world) start(id, transport string) (*rtc.Session, *rtc.Lifecycle) {
	l := rtc.NewLifecycle(rtc.Timeouts{Connect: 5 * time.Second, DisconnectGrace: 2 * time.Second},
		rtc.Peer{ID: id, Node: "n1", Transport: transport}, func() []events.Payload {
			return []events.Payload{events.TrackUnpublished{Peer: id, Track: "cam"}}
		})
	s, err := w.reg.NewSession(rtc.SessionConfig{ID: id, Room: "r1", Transport: transport, Core: l,
		OnPLI: func(_ *rtc.Session, track string) { w.plis <- track }})
	require.NoError(w.t, err)
	now := w.reg.Now()
	require.NoError(w.t, s.StepWait(func(rtc.Core) rtc.Output { return l.Answered(now, "", "") }))
	s.Started()
	return s, l
}

func (w *world) step(s *rtc.Session, in func(now time.Time) rtc.Output) {
	now := w.reg.Now()
	s.Step(func(rtc.Core) rtc.Output { return in(now) })
}

// after lets d pass in the bubble and reports whether s has ended by then.
func after(s *rtc.Session, d time.Duration) bool {
	time.Sleep(d)
	synctest.Wait()
	return ended(s)
}

func ended(s *rtc.Session) bool {
	select {
	case <-s.Done():
		return true
	default:
		return false
	}
}

func TestSessionConnectTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorld(t)
		s, _ := w.start("p1", "whip")
		require.False(t, after(s, 4*time.Second), "within the connect timeout")
		require.True(t, after(s, time.Second), "the registry's tick ended it")
		require.Equal(t, []string{"joined", "unpublished:cam", "left:timeout"}, w.log.types("p1"))
		require.Zero(t, w.reg.Len(""))
		require.NoError(t, w.reg.Close())
	})
}

func TestSessionDisconnectGrace(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorld(t)
		s, l := w.start("p1", "whep")
		w.step(s, l.Connected)
		time.Sleep(time.Minute)
		w.step(s, l.Disconnected)
		time.Sleep(time.Second)
		w.step(s, l.Connected) // back within the grace
		require.False(t, after(s, time.Minute))
		w.step(s, l.Disconnected)
		require.True(t, after(s, 2*time.Second), "not back within the grace")
		require.Equal(t, []string{"joined", "unpublished:cam", "left:disconnected"}, w.log.types("p1"))
		require.NoError(t, w.reg.Close())
	})
}

func TestSessionPLIThrottle(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorld(t)
		s, l := w.start("p1", "whip")
		w.step(s, l.Connected)
		// Ten viewers ask within 300 ms: one PLI; then one more after the interval.
		for range 10 {
			w.step(s, func(now time.Time) rtc.Output { return l.KeyframeRequested(now, "cam") })
			time.Sleep(20 * time.Millisecond)
		}
		time.Sleep(100 * time.Millisecond)
		w.step(s, func(now time.Time) rtc.Output { return l.KeyframeRequested(now, "cam") })
		synctest.Wait()
		require.Len(t, w.plis, 2)
		require.NoError(t, w.reg.Close())
	})
}

// The outbox: a slow append holds no lock, so the session takes inputs meanwhile, and the
// log gets the session's events in the order its core produced them.
func TestSessionOutboxNoIOUnderLock(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorld(t)
		s, l := w.start("p1", "whip")
		w.log.mu.Lock()
		hold := make(chan struct{})
		w.log.hold = hold
		w.log.mu.Unlock()
		w.step(s, l.Deleted) // its append waits
		synctest.Wait()
		stepped := make(chan struct{})
		go func() {
			// Inputs go on while the append waits (before the outbox, this one waited for
			// the session's lock, held across the append).
			w.step(s, l.Connected)
			w.step(s, func(now time.Time) rtc.Output { return l.KeyframeRequested(now, "cam") })
			close(stepped)
		}()
		synctest.Wait()
		select {
		case <-stepped:
		default:
			t.Fatal("a step waited for a slow append")
		}
		require.Equal(t, []string{"joined"}, w.log.types("p1"))
		close(hold)
		synctest.Wait()
		require.True(t, ended(s))
		require.Equal(t, []string{"joined", "unpublished:cam", "left:closed"}, w.log.types("p1"))
		require.Empty(t, w.plis, "nothing after the close")
		require.NoError(t, w.reg.Close())
	})
}

// A join that cannot be recorded reaches its caller (WHIP/WHEP answer 503); an input to an
// ended session says so.
func TestSessionStepWaitErrors(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorld(t)
		full := errors.New("disk full")
		w.log.fail = full
		l := rtc.NewLifecycle(rtc.Timeouts{}, rtc.Peer{ID: "p1"}, nil)
		s, err := w.reg.NewSession(rtc.SessionConfig{ID: "p1", Room: "r1", Transport: "whip", Core: l})
		require.NoError(t, err)
		now := w.reg.Now()
		require.ErrorIs(t, s.StepWait(func(rtc.Core) rtc.Output { return l.Answered(now, "", "") }), full)
		s.Step(func(c rtc.Core) rtc.Output { return c.Shutdown(now) })
		synctest.Wait()
		require.True(t, ended(s))
		require.ErrorIs(t, s.StepWait(func(c rtc.Core) rtc.Output { return c.Deleted(now) }), rtc.ErrSessionClosed)
		require.NoError(t, w.reg.Close())
	})
}

// A session's last events are tried again while the log does not take them (a replicated
// stream electing a leader after a node died): once it does, they are recorded once, and the
// session ends; a shutdown does not wait for the log.
func TestSessionEndRetriedUntilRecorded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorld(t)
		l := rtc.NewLifecycle(rtc.Timeouts{}, rtc.Peer{ID: "p1"}, nil)
		s, err := w.reg.NewSession(rtc.SessionConfig{ID: "p1", Room: "r1", Transport: "whep", Core: l})
		require.NoError(t, err)
		now := w.reg.Now()
		require.NoError(t, s.StepWait(func(rtc.Core) rtc.Output { return l.Answered(now, "", "") }))
		w.log.mu.Lock()
		w.log.fail = errors.New("no stream leader")
		w.log.mu.Unlock()
		s.Step(func(c rtc.Core) rtc.Output { return c.Deleted(now) })
		time.Sleep(5 * time.Second) // fake time: several tries fail
		synctest.Wait()
		require.False(t, ended(s), "the session waits for its end to be recorded")
		require.Equal(t, []string{"joined"}, w.log.types("p1"))
		w.log.mu.Lock()
		w.log.fail = nil
		w.log.mu.Unlock()
		time.Sleep(5 * time.Second)
		synctest.Wait()
		require.True(t, ended(s))
		require.Equal(t, []string{"joined", "left:closed"}, w.log.types("p1"), "recorded once")
		require.NoError(t, w.reg.Close())
	})
}

// One registry for every transport: counts by transport, lookups that keep transports apart,
// and Close that records every session's end before it returns.
func TestRegistryCloseAndCounts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorld(t)
		w.start("a", "whip")
		w.start("b", "whep")
		w.start("c", "whep")
		require.Equal(t, 3, w.reg.Len(""))
		require.Equal(t, 1, w.reg.Len("whip"))
		require.Equal(t, 2, w.reg.Len("whep"))
		_, err := w.reg.Find("whep", "r1", "b")
		require.NoError(t, err)
		_, err = w.reg.Find("whip", "r1", "b")
		require.Error(t, err, "a WHEP session is not found on the WHIP URL")

		require.NoError(t, w.reg.Close())
		require.NoError(t, w.reg.Close(), "idempotent")
		for _, id := range []string{"a", "b", "c"} {
			require.Equal(t, []string{"joined", "unpublished:cam", "left:shutdown"}, w.log.types(id))
		}
		_, err = w.reg.NewSession(rtc.SessionConfig{ID: "d", Room: "r1", Transport: "whip", Core: rtc.NewLifecycle(rtc.Timeouts{}, rtc.Peer{}, nil)})
		require.Error(t, err, "no session after Close")
	})
}

// TestSessionEndedInLog: a session the log has ended (a node that took this one for lost wrote
// its end) ends without recording anything more; Joined lists the sessions whose join is in
// the log, with a sequence at or past it. A session that closes on its own writes its end
// with the ids a survivor derives (events.EndingID), so that an end the log has already is
// stored once.
func TestSessionEndedInLog(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorld(t)
		p1, _ := w.start("p1", "whip")
		p2, l2 := w.start("p2", "whep")
		require.ElementsMatch(t, []rtc.Joined{{ID: "p1", Room: "r1", Transport: "whip", Seq: 1},
			{ID: "p2", Room: "r1", Transport: "whep", Seq: 2}}, w.reg.Joined())

		require.True(t, w.reg.EndedInLog("p1"))
		synctest.Wait()
		require.True(t, ended(p1))
		require.Equal(t, rtc.ReasonEndedInLog, p1.EndReason())
		require.Equal(t, []string{"joined"}, w.log.types("p1"), "nothing recorded")
		require.False(t, w.reg.EndedInLog("p1"), "gone already")
		require.Equal(t, []rtc.Joined{{ID: "p2", Room: "r1", Transport: "whep", Seq: 2}}, w.reg.Joined())

		w.step(p2, l2.Deleted)
		synctest.Wait()
		require.True(t, ended(p2))
		require.False(t, w.reg.EndedInLog("p2"))
		w.log.mu.Lock()
		evs := slices.Clone(w.log.evs)
		w.log.mu.Unlock()
		require.Len(t, evs, 4)
		joined := evs[1].Time
		require.Equal(t, events.EndingID("r1", "n1", "p2", joined, "track", "cam"), evs[2].ID)
		require.Equal(t, events.EndingID("r1", "n1", "p2", joined, "left"), evs[3].ID)
		require.NotEqual(t, evs[0].ID, events.EndingID("r1", "n1", "p1", evs[0].Time, "left"), "only ends get derived ids")
		require.NoError(t, w.reg.Close())
	})
}
