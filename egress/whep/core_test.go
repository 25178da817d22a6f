package whep_test

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/egress/whep"
	"github.com/jetmedia/jetmedia/events"
	"github.com/jetmedia/jetmedia/pipeline/rtc"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

var timeouts = rtc.Timeouts{Connect: 5 * time.Second, DisconnectGrace: 2 * time.Second, PLIInterval: 300 * time.Millisecond}

var t0 = time.Date(2026, 11, 3, 10, 0, 0, 0, time.UTC)

// in is one input to a WHEP core at an offset from t0.
type in struct {
	at    time.Duration
	op    string // answered, connected, disconnected, failed, deleted, shutdown, tick, bound-video, bound-audio, keyframe
	track string
}

func (i in) apply(c *whep.Core) whep.Output {
	now := t0.Add(i.at)
	switch i.op {
	case "answered":
		return c.Answered(now, "10.0.0.2:6000", "chrome")
	case "connected":
		return c.Connected(now)
	case "disconnected":
		return c.Disconnected(now)
	case "failed":
		return c.Failed(now)
	case "deleted":
		return c.Deleted(now)
	case "shutdown":
		return c.Shutdown(now)
	case "tick":
		return c.Tick(now)
	case "bound-video":
		return c.Bound(now, i.track, true)
	case "bound-audio":
		return c.Bound(now, i.track, false)
	case "keyframe":
		return c.KeyframeRequested(now, i.track)
	}
	panic("unknown op " + i.op)
}

func newCore() *whep.Core { return whep.NewCore(timeouts, "view", "n2", "pub", []string{"a", "v"}) }

func answered() whep.Output {
	return whep.Output{Events: []events.Payload{
		events.PeerJoined{Peer: "view", Transport: events.TransportWHEP, Role: "viewer", Node: "n2", RemoteAddr: "10.0.0.2:6000", UserAgent: "chrome"},
		events.SubscriptionStarted{Peer: "view", Track: "a", Publisher: "pub"},
		events.SubscriptionStarted{Peer: "view", Track: "v", Publisher: "pub"},
	}}
}

func closing(reason string) whep.Output {
	return whep.Output{Close: true, Events: []events.Payload{
		events.SubscriptionEnded{Peer: "view", Track: "a"},
		events.SubscriptionEnded{Peer: "view", Track: "v"},
		events.NewPeerLeft("view", reason),
	}}
}

func pli(tracks ...string) whep.Output { return whep.Output{PLI: tracks} }

var none = whep.Output{}

func TestCore(t *testing.T) {
	const ms = time.Millisecond
	tests := []struct {
		name   string
		inputs []in
		want   []whep.Output
		state  rtc.State
	}{
		{"answered joins and subscribes to every track in order",
			[]in{{op: "answered"}, {op: "answered"}},
			[]whep.Output{answered(), none},
			rtc.StateConnecting},
		{"bound asks a keyframe for video only",
			[]in{{op: "answered"}, {op: "connected"}, {op: "bound-audio", track: "a"}, {op: "bound-video", track: "v"}},
			[]whep.Output{answered(), none, none, pli("v")},
			rtc.StateConnected},
		{"viewer keyframe requests are throttled",
			[]in{{op: "answered"}, {op: "connected"}, {at: 0, op: "bound-video", track: "v"},
				{at: 100 * ms, op: "keyframe", track: "v"}, {at: 299 * ms, op: "keyframe", track: "v"},
				{at: 300 * ms, op: "keyframe", track: "v"}, {at: 301 * ms, op: "keyframe", track: "v"}},
			[]whep.Output{answered(), none, pli("v"), none, none, pli("v"), none},
			rtc.StateConnected},
		{"delete ends every subscription, then leaves as closed",
			[]in{{op: "answered"}, {op: "connected"}, {op: "deleted"}},
			[]whep.Output{answered(), none, closing("closed")},
			rtc.StateClosed},
		{"failed leaves as disconnected",
			[]in{{op: "answered"}, {op: "connected"}, {op: "failed"}},
			[]whep.Output{answered(), none, closing("disconnected")},
			rtc.StateClosed},
		{"shutdown",
			[]in{{op: "answered"}, {op: "shutdown"}},
			[]whep.Output{answered(), closing("shutdown")},
			rtc.StateClosed},
		{"tick past connect timeout",
			[]in{{op: "answered"}, {at: 5*time.Second - 1, op: "tick"}, {at: 5 * time.Second, op: "tick"}},
			[]whep.Output{answered(), none, closing("timeout")},
			rtc.StateClosed},
		{"tick past disconnect grace",
			[]in{{op: "answered"}, {op: "connected"}, {at: 3 * time.Second, op: "disconnected"}, {at: 5 * time.Second, op: "tick"}},
			[]whep.Output{answered(), none, none, closing("disconnected")},
			rtc.StateClosed},
		{"closed before answer emits nothing but close",
			[]in{{op: "failed"}, {op: "answered"}},
			[]whep.Output{{Close: true}, none},
			rtc.StateClosed},
		{"inputs after close do nothing",
			[]in{{op: "answered"}, {op: "deleted"}, {op: "deleted"}, {op: "failed"}, {op: "shutdown"}, {at: time.Hour, op: "tick"},
				{op: "connected"}, {op: "bound-video", track: "v"}, {op: "keyframe", track: "v"}, {op: "answered"}},
			[]whep.Output{answered(), closing("closed"), none, none, none, none, none, none, none, none},
			rtc.StateClosed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Len(t, tt.want, len(tt.inputs), "table: one expected output per input")
			c := newCore()
			for i, input := range tt.inputs {
				require.Equal(t, tt.want[i], input.apply(c), "input %d: %s at %s", i, input.op, input.at)
			}
			require.Equal(t, tt.state, c.State())
		})
	}
}

// Each viewer gets its own first keyframe at once; throttling toward the publisher across
// viewers is the publisher core's job (see ingress/whip).
func TestViewersThrottledIndependently(t *testing.T) {
	a, b := newCore(), newCore()
	for _, c := range []*whep.Core{a, b} {
		c.Answered(t0, "", "")
		c.Connected(t0)
	}
	require.Equal(t, pli("v"), a.Bound(t0, "v", true))
	require.Equal(t, pli("v"), b.Bound(t0.Add(time.Millisecond), "v", true))
	require.Equal(t, none, a.KeyframeRequested(t0.Add(2*time.Millisecond), "v"))
	require.Equal(t, none, b.KeyframeRequested(t0.Add(2*time.Millisecond), "v"))
}

// TestCoreGolden records one representative viewer session. Run with -update to rewrite.
func TestCoreGolden(t *testing.T) {
	const ms = time.Millisecond
	session := []in{
		{at: 0, op: "answered"},
		{at: 300 * ms, op: "connected"},
		{at: 320 * ms, op: "bound-audio", track: "a"},
		{at: 330 * ms, op: "bound-video", track: "v"},
		{at: 400 * ms, op: "keyframe", track: "v"},
		{at: 900 * ms, op: "keyframe", track: "v"},
		{at: 3000 * ms, op: "disconnected"},
		{at: 4000 * ms, op: "connected"},
		{at: 8000 * ms, op: "tick"},
		{at: 9000 * ms, op: "deleted"},
		{at: 9500 * ms, op: "keyframe", track: "v"},
	}
	c := newCore()
	var b strings.Builder
	for _, input := range session {
		out := input.apply(c)
		fmt.Fprintf(&b, "%-7s %-12s %-2s -> state=%s", input.at, input.op, input.track, c.State())
		if out.Close {
			b.WriteString(" close")
		}
		for _, p := range out.PLI {
			fmt.Fprintf(&b, " pli=%s", p)
		}
		b.WriteString("\n")
		for _, p := range out.Events {
			data, err := json.Marshal(p)
			require.NoError(t, err)
			fmt.Fprintf(&b, "        event %s %s\n", p.EventType(), data)
		}
	}
	path := filepath.Join("testdata", "session.golden")
	if *update {
		require.NoError(t, os.WriteFile(path, []byte(b.String()), 0o644))
	}
	want, err := os.ReadFile(path)
	require.NoError(t, err, "run with -update to create it")
	require.Equal(t, string(want), b.String())
}

func TestCoreIdentity(t *testing.T) {
	c := newCore()
	c.SetIdentity("bob", "")
	out := c.Answered(t0, "10.0.0.2:5000", "chrome")
	require.Equal(t, events.PeerJoined{Peer: "view", Transport: "whep", Role: "viewer", Node: "n2",
		RemoteAddr: "10.0.0.2:5000", UserAgent: "chrome", Identity: "bob"}, out.Events[0])
}
