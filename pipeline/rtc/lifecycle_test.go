package rtc_test

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/events"
	"github.com/jetmedia/jetmedia/pipeline/rtc"
)

// step is one input to a Lifecycle at an offset from t0, with the result it must give.
type step struct {
	at    time.Duration
	op    string     // answer, connected, disconnected, expired, close, pli
	track string     // for pli
	want  any        // bool (answer, pli), string (expired), [2]bool (close); nil for no result
	state *rtc.State // state after the step; nil = not checked
}

func in(s rtc.State) *rtc.State { return &s }

func TestLifecycle(t *testing.T) {
	const (
		s  = time.Second
		ms = time.Millisecond
	)
	timeouts := rtc.Timeouts{Connect: 5 * s, DisconnectGrace: 2 * s, PLIInterval: 300 * ms}
	tests := []struct {
		name     string
		timeouts rtc.Timeouts
		steps    []step
	}{
		{"new session is not expired and closes unanswered", timeouts, []step{
			{at: 0, op: "expired", want: "", state: in(rtc.StateNew)},
			{at: time.Hour, op: "expired", want: "", state: in(rtc.StateNew)},
			{at: time.Hour, op: "close", want: [2]bool{true, false}, state: in(rtc.StateClosed)},
		}},
		{"answer only once", timeouts, []step{
			{at: 0, op: "answer", want: true, state: in(rtc.StateConnecting)},
			{at: s, op: "answer", want: false, state: in(rtc.StateConnecting)},
		}},
		{"connect timeout at exactly Connect", timeouts, []step{
			{at: s, op: "answer", want: true, state: in(rtc.StateConnecting)},
			{at: 6*s - 1, op: "expired", want: "", state: in(rtc.StateConnecting)},
			{at: 6 * s, op: "expired", want: "timeout", state: in(rtc.StateConnecting)},
		}},
		{"connected in time never times out", timeouts, []step{
			{at: 0, op: "answer", want: true},
			{at: 4 * s, op: "connected", state: in(rtc.StateConnected)},
			{at: time.Hour, op: "expired", want: "", state: in(rtc.StateConnected)},
		}},
		{"connected before answer is ignored", timeouts, []step{
			{at: 0, op: "connected", state: in(rtc.StateNew)},
			{at: 0, op: "disconnected", state: in(rtc.StateNew)},
			{at: time.Hour, op: "expired", want: ""},
		}},
		{"disconnect grace expires", timeouts, []step{
			{at: 0, op: "answer", want: true},
			{at: s, op: "connected"},
			{at: 10 * s, op: "disconnected", state: in(rtc.StateConnected)},
			{at: 12*s - 1, op: "expired", want: ""},
			{at: 12 * s, op: "expired", want: "disconnected"},
		}},
		{"grace counts from the first disconnect", timeouts, []step{
			{at: 0, op: "answer", want: true},
			{at: s, op: "connected"},
			{at: 10 * s, op: "disconnected"},
			{at: 11 * s, op: "disconnected"},
			{at: 12 * s, op: "expired", want: "disconnected"},
		}},
		{"reconnect within grace", timeouts, []step{
			{at: 0, op: "answer", want: true},
			{at: s, op: "connected"},
			{at: 10 * s, op: "disconnected"},
			{at: 11 * s, op: "connected", state: in(rtc.StateConnected)},
			{at: 20 * s, op: "expired", want: ""},
			{at: 30 * s, op: "disconnected"},
			{at: 31 * s, op: "expired", want: ""},
			{at: 32 * s, op: "expired", want: "disconnected"},
		}},
		{"disconnect while connecting keeps the connect timeout", timeouts, []step{
			{at: 0, op: "answer", want: true},
			{at: s, op: "disconnected", state: in(rtc.StateConnecting)},
			{at: 5 * s, op: "expired", want: "timeout"},
		}},
		{"PLI throttle per track", timeouts, []step{
			{at: 0, op: "pli", track: "a", want: true},
			{at: 0, op: "pli", track: "b", want: true},
			{at: 100 * ms, op: "pli", track: "a", want: false},
			{at: 299 * ms, op: "pli", track: "a", want: false},
			{at: 300 * ms, op: "pli", track: "a", want: true},
			{at: 310 * ms, op: "pli", track: "b", want: true},
			{at: 400 * ms, op: "pli", track: "a", want: false},
		}},
		{"refused PLI does not push the window", timeouts, []step{
			{at: 0, op: "pli", track: "a", want: true},
			{at: 200 * ms, op: "pli", track: "a", want: false},
			{at: 300 * ms, op: "pli", track: "a", want: true},
		}},
		{"default timeouts", rtc.Timeouts{}, []step{
			{at: 0, op: "answer", want: true},
			{at: 30*s - 1, op: "expired", want: ""},
			{at: 30 * s, op: "expired", want: "timeout"},
			{at: 0, op: "pli", track: "a", want: true},
			{at: 299 * ms, op: "pli", track: "a", want: false},
			{at: 300 * ms, op: "pli", track: "a", want: true},
		}},
		{"default grace", rtc.Timeouts{}, []step{
			{at: 0, op: "answer", want: true},
			{at: 0, op: "connected"},
			{at: 0, op: "disconnected"},
			{at: 10*s - 1, op: "expired", want: ""},
			{at: 10 * s, op: "expired", want: "disconnected"},
		}},
		{"close is idempotent", timeouts, []step{
			{at: 0, op: "answer", want: true},
			{at: s, op: "close", want: [2]bool{true, true}, state: in(rtc.StateClosed)},
			{at: s, op: "close", want: [2]bool{false, false}, state: in(rtc.StateClosed)},
		}},
		{"closed ignores every input", timeouts, []step{
			{at: 0, op: "answer", want: true},
			{at: 0, op: "connected"},
			{at: s, op: "close", want: [2]bool{true, true}},
			{at: s, op: "answer", want: false, state: in(rtc.StateClosed)},
			{at: s, op: "connected", state: in(rtc.StateClosed)},
			{at: s, op: "disconnected", state: in(rtc.StateClosed)},
			{at: time.Hour, op: "expired", want: ""},
			{at: time.Hour, op: "pli", track: "a", want: false},
		}},
	}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := rtc.NewLifecycle(tt.timeouts, rtc.Peer{ID: "p"}, nil)
			require.Equal(t, rtc.StateNew, l.State())
			for i, st := range tt.steps {
				now := t0.Add(st.at)
				var got any
				switch st.op {
				case "answer":
					got = len(l.Answered(now, "", "").Events) > 0
				case "connected":
					l.Connected(now)
				case "disconnected":
					l.Disconnected(now)
				case "expired":
					got = string(l.Expired(now))
				case "close":
					out := l.Close(now, rtc.ReasonClosed)
					got = [2]bool{out.Close != "", len(out.Events) > 0}
				case "pli":
					got = l.AllowPLI(now, st.track)
				default:
					t.Fatalf("unknown op %q", st.op)
				}
				require.Equal(t, st.want, got, "step %d (%s at %s)", i, st.op, st.at)
				if st.state != nil {
					require.Equal(t, *st.state, l.State(), "state after step %d (%s)", i, st.op)
				}
			}
		})
	}
}

func TestStateString(t *testing.T) {
	require.Equal(t, "new", rtc.StateNew.String())
	require.Equal(t, "connecting", rtc.StateConnecting.String())
	require.Equal(t, "connected", rtc.StateConnected.String())
	require.Equal(t, "closed", rtc.StateClosed.String())
}

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

// golden compares got with the file at path (rewritten with -update).
func golden(t *testing.T, path, got string) {
	t.Helper()
	if *update {
		require.NoError(t, os.WriteFile(path, []byte(got), 0o644))
	}
	want, err := os.ReadFile(path)
	require.NoError(t, err, "run with -update to create it")
	require.Equal(t, string(want), got)
}

// lifecycleInput is one named input to a Lifecycle at an offset from t0.
type lifecycleInput struct {
	at    time.Duration
	op    string
	track string
}

func (in lifecycleInput) apply(l *rtc.Lifecycle, now time.Time) rtc.Output {
	plain := map[string]func(time.Time) rtc.Output{
		"connected": l.Connected, "disconnected": l.Disconnected, "failed": l.Failed,
		"deleted": l.Deleted, "shutdown": l.Shutdown, "tick": l.Tick, "ended-in-log": l.EndedInLog,
	}
	if f, ok := plain[in.op]; ok {
		return f(now)
	}
	switch in.op {
	case "joined":
		return l.Joined(now, "10.0.0.1:5000", "sdk", `{"seat":1}`)
	case "negotiating":
		l.Negotiating(now)
		return rtc.Output{}
	case "answered":
		return l.Answered(now, "10.0.0.1:5000", "obs")
	case "keyframe":
		return l.KeyframeRequested(now, in.track)
	}
	panic("unknown op " + in.op)
}

// TestLifecycleGolden records the lifecycle through each way a session ends: the close reasons
// and the ending hook's events before the peer.left. Run with -update to rewrite.
func TestLifecycleGolden(t *testing.T) {
	const ms = time.Millisecond
	sessions := []struct {
		name   string
		inputs []lifecycleInput
	}{
		{"never connects: timeout", []lifecycleInput{{0, "answered", ""}, {29999 * ms, "tick", ""}, {30 * time.Second, "tick", ""}}},
		{"ICE fails: disconnected", []lifecycleInput{{0, "answered", ""}, {400 * ms, "connected", ""}, {5 * time.Second, "failed", ""}}},
		{"recovers within the grace, then does not", []lifecycleInput{{0, "answered", ""}, {400 * ms, "connected", ""},
			{5 * time.Second, "disconnected", ""}, {6 * time.Second, "tick", ""}, {7 * time.Second, "connected", ""},
			{20 * time.Second, "tick", ""}, {30 * time.Second, "disconnected", ""}, {40 * time.Second, "tick", ""}}},
		{"keyframes throttled, then DELETE: closed", []lifecycleInput{{0, "answered", ""}, {400 * ms, "connected", ""},
			{500 * ms, "keyframe", "cam"}, {600 * ms, "keyframe", "cam"}, {600 * ms, "keyframe", "mic"},
			{800 * ms, "keyframe", "cam"}, {2 * time.Second, "deleted", ""}, {3 * time.Second, "keyframe", "cam"}}},
		{"node stops: shutdown", []lifecycleInput{{0, "answered", ""}, {time.Second, "shutdown", ""}, {2 * time.Second, "deleted", ""}}},
		{"room join without media never times out", []lifecycleInput{{0, "joined", ""}, {time.Hour, "tick", ""},
			{time.Hour, "negotiating", ""}, {time.Hour + 30*time.Second, "tick", ""}}},
		{"ends before the join: close only", []lifecycleInput{{0, "failed", ""}, {0, "answered", ""}}},
		{"the log ended it (node taken for lost): close, nothing recorded", []lifecycleInput{{0, "answered", ""},
			{400 * ms, "connected", ""}, {5 * time.Second, "ended-in-log", ""}, {5 * time.Second, "ended-in-log", ""},
			{6 * time.Second, "deleted", ""}}},
	}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var b strings.Builder
	for _, s := range sessions {
		fmt.Fprintf(&b, "# %s\n", s.name)
		l := rtc.NewLifecycle(rtc.Timeouts{}, rtc.Peer{ID: "p1", Node: "n1", Transport: "whip", Role: "publisher", Identity: "alice"},
			func() []events.Payload {
				return []events.Payload{events.TrackUnpublished{Peer: "p1", Track: "cam"}}
			})
		for _, in := range s.inputs {
			out := in.apply(l, t0.Add(in.at))
			fmt.Fprintf(&b, "%-9s %-12s %-4s -> %s%s\n", in.at, in.op, in.track, l.State(), out)
		}
	}
	golden(t, filepath.Join("testdata", "lifecycle.golden"), b.String())
}
