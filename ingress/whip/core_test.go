package whip_test

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

	"github.com/jetmedia/jetmedia/events"
	"github.com/jetmedia/jetmedia/ingress/whip"
	"github.com/jetmedia/jetmedia/pipeline/rtc"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

var timeouts = rtc.Timeouts{Connect: 5 * time.Second, DisconnectGrace: 2 * time.Second, PLIInterval: 300 * time.Millisecond}

var t0 = time.Date(2026, 11, 3, 10, 0, 0, 0, time.UTC)

// in is one input to a WHIP core at an offset from t0.
type in struct {
	at    time.Duration
	op    string // answered, connected, disconnected, failed, deleted, shutdown, tick, track, keyframe
	track string
	kind  string
}

func (i in) apply(c *whip.Core) whip.Output {
	now := t0.Add(i.at)
	switch i.op {
	case "answered":
		return c.Answered(now, "10.0.0.1:5000", "obs")
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
	case "track":
		return c.TrackStarted(now, trackInfo(i.track, i.kind))
	case "keyframe":
		return c.KeyframeRequested(now, i.track)
	}
	panic("unknown op " + i.op)
}

func trackInfo(id, kind string) whip.TrackInfo {
	if kind == "audio" {
		return whip.TrackInfo{Track: id, Kind: "audio", Codec: "audio/opus", ClockRate: 48000, Channels: 2, Fmtp: "minptime=10;useinbandfec=1"}
	}
	return whip.TrackInfo{Track: id, Kind: "video", Codec: "video/VP8", ClockRate: 90000}
}

func joined() events.Payload {
	return events.PeerJoined{Peer: "pub", Transport: events.TransportWHIP, Role: "publisher", Node: "n1", RemoteAddr: "10.0.0.1:5000", UserAgent: "obs"}
}

func published(id, kind string) events.Payload {
	ti := trackInfo(id, kind)
	return events.TrackPublished{Peer: "pub", Track: id, Kind: ti.Kind, Codec: ti.Codec, ClockRate: ti.ClockRate,
		Channels: ti.Channels, FmtpLine: ti.Fmtp, Layers: []string{"0"}}
}

func unpublished(id string) events.Payload { return events.TrackUnpublished{Peer: "pub", Track: id} }

func left(reason string) events.Payload { return events.NewPeerLeft("pub", reason) }

func evs(p ...events.Payload) whip.Output { return whip.Output{Events: p} }

func closing(p ...events.Payload) whip.Output { return whip.Output{Events: p, Close: true} }

func pli(tracks ...string) whip.Output { return whip.Output{PLI: tracks} }

var none = whip.Output{}

func TestCore(t *testing.T) {
	const ms = time.Millisecond
	tests := []struct {
		name   string
		inputs []in
		want   []whip.Output // one per input
		state  rtc.State     // after the last input
	}{
		{"answered joins the room",
			[]in{{op: "answered"}, {op: "answered"}},
			[]whip.Output{evs(joined()), none},
			rtc.StateConnecting},
		{"video track published with an immediate PLI, audio without",
			[]in{{op: "answered"}, {op: "connected"}, {op: "track", track: "v", kind: "video"}, {op: "track", track: "a", kind: "audio"}},
			[]whip.Output{evs(joined()), none, {Events: []events.Payload{published("v", "video")}, PLI: []string{"v"}}, evs(published("a", "audio"))},
			rtc.StateConnected},
		{"delete unpublishes every track in order, then leaves as closed",
			[]in{{op: "answered"}, {op: "connected"}, {op: "track", track: "a", kind: "audio"}, {op: "track", track: "v", kind: "video"}, {op: "deleted"}},
			[]whip.Output{evs(joined()), none, evs(published("a", "audio")), {Events: []events.Payload{published("v", "video")}, PLI: []string{"v"}},
				closing(unpublished("a"), unpublished("v"), left("closed"))},
			rtc.StateClosed},
		{"failed leaves as disconnected",
			[]in{{op: "answered"}, {op: "connected"}, {op: "track", track: "a", kind: "audio"}, {op: "failed"}},
			[]whip.Output{evs(joined()), none, evs(published("a", "audio")), closing(unpublished("a"), left("disconnected"))},
			rtc.StateClosed},
		{"shutdown leaves as shutdown",
			[]in{{op: "answered"}, {op: "connected"}, {op: "shutdown"}},
			[]whip.Output{evs(joined()), none, closing(left("shutdown"))},
			rtc.StateClosed},
		{"tick past connect timeout",
			[]in{{op: "answered"}, {at: 5*time.Second - 1, op: "tick"}, {at: 5 * time.Second, op: "tick"}},
			[]whip.Output{evs(joined()), none, closing(left("timeout"))},
			rtc.StateClosed},
		{"tick past disconnect grace",
			[]in{{op: "answered"}, {op: "connected"}, {at: time.Second, op: "track", track: "a", kind: "audio"}, {at: 10 * time.Second, op: "disconnected"},
				{at: 11 * time.Second, op: "tick"}, {at: 12 * time.Second, op: "tick"}},
			[]whip.Output{evs(joined()), none, evs(published("a", "audio")), none, none, closing(unpublished("a"), left("disconnected"))},
			rtc.StateClosed},
		{"reconnect within grace keeps the session",
			[]in{{op: "answered"}, {op: "connected"}, {at: 10 * time.Second, op: "disconnected"}, {at: 11 * time.Second, op: "connected"}, {at: time.Minute, op: "tick"}},
			[]whip.Output{evs(joined()), none, none, none, none},
			rtc.StateConnected},
		{"closed before answer emits nothing but close",
			[]in{{op: "deleted"}, {op: "answered"}},
			[]whip.Output{{Close: true}, none},
			rtc.StateClosed},
		{"inputs after close do nothing",
			[]in{{op: "answered"}, {op: "deleted"}, {op: "deleted"}, {op: "failed"}, {op: "shutdown"}, {at: time.Hour, op: "tick"},
				{op: "connected"}, {op: "track", track: "v", kind: "video"}, {op: "keyframe", track: "v"}, {op: "answered"}},
			[]whip.Output{evs(joined()), closing(left("closed")), none, none, none, none, none, none, none, none},
			rtc.StateClosed},
		{"keyframe requests from many viewers are throttled into one PLI per interval",
			[]in{{op: "answered"}, {op: "connected"},
				{at: 1000 * ms, op: "keyframe", track: "v"}, {at: 1001 * ms, op: "keyframe", track: "v"}, {at: 1100 * ms, op: "keyframe", track: "v"},
				{at: 1299 * ms, op: "keyframe", track: "v"}, {at: 1300 * ms, op: "keyframe", track: "v"}, {at: 1300 * ms, op: "keyframe", track: "w"}},
			[]whip.Output{evs(joined()), none, pli("v"), none, none, none, pli("v"), pli("w")},
			rtc.StateConnected},
		{"track start PLI counts toward the throttle",
			[]in{{op: "answered"}, {op: "connected"}, {at: time.Second, op: "track", track: "v", kind: "video"},
				{at: time.Second + 100*ms, op: "keyframe", track: "v"}, {at: time.Second + 300*ms, op: "keyframe", track: "v"}},
			[]whip.Output{evs(joined()), none, {Events: []events.Payload{published("v", "video")}, PLI: []string{"v"}}, none, pli("v")},
			rtc.StateConnected},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Len(t, tt.want, len(tt.inputs), "table: one expected output per input")
			c := whip.NewCore(timeouts, "pub", "n1")
			for i, input := range tt.inputs {
				require.Equal(t, tt.want[i], input.apply(c), "input %d: %s at %s", i, input.op, input.at)
			}
			require.Equal(t, tt.state, c.State())
		})
	}
}

func TestCoreTracks(t *testing.T) {
	c := whip.NewCore(timeouts, "pub", "n1")
	c.Answered(t0, "", "")
	c.TrackStarted(t0, trackInfo("a", "audio"))
	c.TrackStarted(t0, trackInfo("v", "video"))
	require.Equal(t, []string{"a", "v"}, c.Tracks())
}

// TestCoreGolden records one representative publisher session: join, two tracks, keyframe
// requests, a disconnect that recovers, a second that does not. Run with -update to rewrite.
func TestCoreGolden(t *testing.T) {
	const ms = time.Millisecond
	session := []in{
		{at: 0, op: "answered"},
		{at: 400 * ms, op: "connected"},
		{at: 600 * ms, op: "track", track: "mic", kind: "audio"},
		{at: 650 * ms, op: "track", track: "cam", kind: "video"},
		{at: 700 * ms, op: "keyframe", track: "cam"},
		{at: 1200 * ms, op: "keyframe", track: "cam"},
		{at: 5000 * ms, op: "disconnected"},
		{at: 6000 * ms, op: "tick"},
		{at: 6500 * ms, op: "connected"},
		{at: 9000 * ms, op: "disconnected"},
		{at: 10000 * ms, op: "tick"},
		{at: 11000 * ms, op: "tick"},
		{at: 12000 * ms, op: "keyframe", track: "cam"},
		{at: 13000 * ms, op: "deleted"},
	}
	c := whip.NewCore(timeouts, "pub", "n1")
	var b strings.Builder
	for _, input := range session {
		out := input.apply(c)
		fmt.Fprintf(&b, "%-7s %-12s %-4s -> state=%s", input.at, input.op, input.track, c.State())
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
	golden(t, filepath.Join("testdata", "session.golden"), b.String())
}

func golden(t *testing.T, path, got string) {
	t.Helper()
	if *update {
		require.NoError(t, os.WriteFile(path, []byte(got), 0o644))
	}
	want, err := os.ReadFile(path)
	require.NoError(t, err, "run with -update to create it")
	require.Equal(t, string(want), got)
}

func TestCoreIdentity(t *testing.T) {
	c := whip.NewCore(timeouts, "pub", "n1")
	c.SetIdentity("alice", "Alice")
	out := c.Answered(t0, "10.0.0.1:5000", "obs")
	require.Equal(t, []events.Payload{events.PeerJoined{Peer: "pub", Transport: "whip", Role: "publisher", Node: "n1",
		RemoteAddr: "10.0.0.1:5000", UserAgent: "obs", Identity: "alice", Name: "Alice"}}, out.Events)
}
