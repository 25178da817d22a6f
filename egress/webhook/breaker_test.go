package webhook

import (
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// step is one call on a circuit: a lane asking to send, or the outcome of a request.
type step struct {
	at   time.Duration // since the start
	ask  int           // lane asking (with wantGrant); -1: a record step
	grnt grant
	wait time.Duration // wanted wait with grantWait

	probe  bool
	out    outcome
	retry  time.Duration
	counts bool

	state circuitState // after the step
}

func ask(at time.Duration, lane int, g grant, wait time.Duration, st circuitState) step {
	return step{at: at, ask: lane, grnt: g, wait: wait, state: st}
}

func rec(at time.Duration, probe bool, o outcome, counts bool, st circuitState) step {
	return step{at: at, ask: -1, probe: probe, out: o, counts: counts, state: st}
}

func TestCircuit(t *testing.T) {
	const s = time.Second
	for _, tc := range []struct {
		name        string
		b           Breaker
		maxAttempts int
		steps       []step
	}{
		{name: "closed: successes and refusals never open it", b: Breaker{Failures: 2}, maxAttempts: 10, steps: []step{
			ask(0, 0, grantSend, 0, circuitClosed),
			rec(0, false, outcomeDown, true, circuitClosed),
			rec(0, false, outcomeAccepted, false, circuitClosed), // ends the run
			rec(0, false, outcomeDown, true, circuitClosed),
			rec(0, false, outcomeRefused, true, circuitClosed), // the receiver answered: ends the run, counts for the event
			rec(0, false, outcomeDown, true, circuitClosed),
			rec(0, false, outcomeRefused, true, circuitClosed),
			ask(0, 1, grantSend, 0, circuitClosed),
		}},
		{name: "failures in a row open it; the one that opens it does not count", b: Breaker{Failures: 3}, maxAttempts: 10, steps: []step{
			rec(0, false, outcomeDown, true, circuitClosed),
			rec(1*time.Millisecond, false, outcomeDown, true, circuitClosed),
			rec(2*time.Millisecond, false, outcomeDown, false, circuitOpen),
			ask(3*time.Millisecond, 0, grantWait, s-time.Millisecond, circuitOpen), // probe after initial backoff (no jitter here)
			rec(4*time.Millisecond, false, outcomeDown, false, circuitOpen),        // sent before it opened: not held against the event
		}},
		{name: "a failure after the window starts a new run", b: Breaker{Failures: 2, Window: 10 * s}, maxAttempts: 10, steps: []step{
			rec(0, false, outcomeDown, true, circuitClosed),
			rec(11*s, false, outcomeDown, true, circuitClosed),
			rec(12*s, false, outcomeDown, false, circuitOpen),
		}},
		{name: "it opens no later than max attempts", b: Breaker{Failures: 5}, maxAttempts: 2, steps: []step{
			rec(0, false, outcomeDown, true, circuitClosed),
			rec(0, false, outcomeDown, false, circuitOpen),
		}},
		{name: "probe: one lane, backoff doubles to the cap, success closes", b: Breaker{Failures: 1}, maxAttempts: 10, steps: []step{
			rec(0, false, outcomeDown, false, circuitOpen),
			ask(0, 2, grantWait, s, circuitOpen),
			ask(0, 0, grantWait, s, circuitOpen),
			ask(s, 1, grantWait, 0, circuitOpen), // lane 0 is the next waiting lane, not 1 (which came later)
			ask(s, 0, grantProbe, 0, circuitHalfOpen),
			ask(s, 1, grantWait, 0, circuitHalfOpen),
			rec(s, true, outcomeDown, false, circuitOpen),
			ask(s, 1, grantWait, 2*s, circuitOpen),
			ask(3*s, 1, grantProbe, 0, circuitHalfOpen), // the next waiting lane after 0
			rec(3*s, true, outcomeDown, false, circuitOpen),
			ask(7*s, 2, grantProbe, 0, circuitHalfOpen), // 4 s: doubled again
			rec(7*s, true, outcomeDown, false, circuitOpen),
			ask(11*s, 0, grantWait, 1*s, circuitOpen), // capped at 5 s
			ask(12*s, 0, grantProbe, 0, circuitHalfOpen),
			rec(12*s, true, outcomeAccepted, false, circuitClosed),
			ask(12*s, 1, grantSend, 0, circuitClosed),
			ask(12*s, 2, grantSend, 0, circuitClosed),
		}},
		{name: "a refused probe closes it too: the receiver is up", b: Breaker{Failures: 1}, maxAttempts: 10, steps: []step{
			rec(0, false, outcomeDown, false, circuitOpen),
			ask(s, 0, grantProbe, 0, circuitHalfOpen),
			rec(s, true, outcomeRefused, true, circuitClosed),
		}},
		{name: "Retry-After of a failed probe is heeded up to the cap", b: Breaker{Failures: 1}, maxAttempts: 10, steps: []step{
			{at: 0, ask: -1, out: outcomeDown, retry: 3 * s, state: circuitOpen},
			ask(0, 0, grantWait, 3*s, circuitOpen),
			ask(3*s, 0, grantProbe, 0, circuitHalfOpen),
			{at: 3 * s, ask: -1, probe: true, out: outcomeDown, retry: time.Hour, state: circuitOpen},
			ask(3*s, 0, grantWait, 5*s, circuitOpen),
		}},
		{name: "a late success of a request sent before it opened closes it", b: Breaker{Failures: 1}, maxAttempts: 10, steps: []step{
			rec(0, false, outcomeDown, false, circuitOpen),
			rec(0, false, outcomeAccepted, false, circuitClosed),
		}},
		{name: "off: every failure counts, nothing opens", b: Breaker{Off: true}, maxAttempts: 3, steps: []step{
			rec(0, false, outcomeDown, true, circuitClosed),
			rec(0, false, outcomeDown, true, circuitClosed),
			rec(0, false, outcomeDown, true, circuitClosed),
			rec(0, false, outcomeRefused, true, circuitClosed),
			rec(0, false, outcomeAccepted, false, circuitClosed),
			ask(0, 0, grantSend, 0, circuitClosed),
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCircuit(3, tc.b, tc.maxAttempts, s, 5*s, func(d time.Duration) time.Duration { return d })
			t0 := time.Unix(1_800_000_000, 0)
			for i, st := range tc.steps {
				now := t0.Add(st.at)
				where := fmt.Sprintf("step %d", i)
				if st.ask >= 0 {
					g, wait := c.ask(st.ask, now)
					require.Equal(t, st.grnt, g, where)
					require.Equal(t, st.wait, wait, where)
				} else {
					require.Equal(t, st.counts, c.record(st.probe, st.out, st.retry, now), where)
				}
				require.Equal(t, st.state, c.state, where)
			}
		})
	}
}

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want outcome
	}{
		{nil, outcomeAccepted},
		{&StatusError{Code: http.StatusBadRequest}, outcomeRefused},
		{&StatusError{Code: http.StatusUnauthorized}, outcomeRefused},
		{&StatusError{Code: http.StatusNotFound}, outcomeRefused},
		{&StatusError{Code: http.StatusUnprocessableEntity}, outcomeRefused},
		{&StatusError{Code: http.StatusRequestTimeout}, outcomeDown},
		{&StatusError{Code: http.StatusTooManyRequests}, outcomeDown},
		{&StatusError{Code: http.StatusInternalServerError}, outcomeDown},
		{&StatusError{Code: http.StatusServiceUnavailable}, outcomeDown},
		{&StatusError{Code: http.StatusMovedPermanently}, outcomeDown}, // a redirect the client did not follow: not an answer about the event
		{fmt.Errorf("post: %w", errors.New("connection refused")), outcomeDown},
	} {
		require.Equal(t, tc.want, classify(tc.err), "%v", tc.err)
	}
}

// A lane drops redeliveries of queued events, acknowledges those of finished ones, and forgets
// a room once nothing of it is pending and no redelivery can come any more.
func TestLaneRooms(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	l := newLane(0, t0)
	it := func(room string, seq uint64) item { return item{room: room, seq: seq} }
	require.Equal(t, pushQueued, l.push(it("a", 1)))
	require.Equal(t, pushQueued, l.push(it("a", 3)))
	require.Equal(t, pushQueued, l.push(it("b", 2)))
	require.Equal(t, pushDuplicate, l.push(it("a", 1)), "ack wait ran out while it was queued")
	got, ok := l.pop()
	require.True(t, ok)
	require.Equal(t, uint64(1), got.seq)
	l.finish("a", 1, t0)
	require.Equal(t, pushDone, l.push(it("a", 1)), "already delivered")
	require.Equal(t, pushDuplicate, l.push(it("a", 3)))
	for _, want := range []uint64{3, 2} {
		got, ok = l.pop()
		require.True(t, ok)
		require.Equal(t, want, got.seq)
		l.finish(got.room, got.seq, t0.Add(time.Second))
	}
	_, ok = l.pop()
	require.False(t, ok)
	require.Len(t, l.rooms, 2)

	// Room c stays busy; a and b are idle.
	require.Equal(t, pushQueued, l.push(it("c", 4)))
	l.finish("x", 9, t0.Add(roomForgetAfter/2)) // a room with nothing pending: only sweeps, too early to forget
	require.Len(t, l.rooms, 3)
	l.finish("x", 9, t0.Add(roomForgetAfter+2*time.Second))
	require.Equal(t, []string{"c"}, keys(l.rooms), "a and b forgotten, c (pending) kept")
	require.Equal(t, pushQueued, l.push(it("b", 10)), "a forgotten room starts afresh")
	for _, want := range []uint64{4, 10} {
		got, ok = l.pop()
		require.True(t, ok)
		require.Equal(t, want, got.seq)
		l.finish(got.room, got.seq, t0.Add(roomForgetAfter+3*time.Second)) // within sweepEvery: no sweep
	}
	require.Len(t, l.rooms, 2)
	l.finish("x", 9, t0.Add(2*roomForgetAfter+4*time.Second))
	require.Empty(t, l.rooms)
}

func keys(m map[string]*roomMark) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func TestParseBreaker(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Breaker
		err  bool
	}{
		{in: "off", want: Breaker{Off: true}},
		{in: "on", want: Breaker{}},
		{in: "8", want: Breaker{Failures: 8}},
		{in: "3/30s", want: Breaker{Failures: 3, Window: 30 * time.Second}},
		{in: "0", err: true},
		{in: "-1", err: true},
		{in: "x", err: true},
		{in: "3/", err: true},
		{in: "3/-1s", err: true},
	} {
		got, err := parseBreaker(tc.in)
		if tc.err {
			require.Error(t, err, tc.in)
			continue
		}
		require.NoError(t, err, tc.in)
		require.Equal(t, tc.want, got, tc.in)
	}
}
