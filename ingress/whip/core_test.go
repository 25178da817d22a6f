package whip_test

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
	"github.com/jetmedia/jetmedia/ingress/whip"
	"github.com/jetmedia/jetmedia/pipeline/rtc"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

// The lifecycle itself (timeouts, grace, throttle, reasons) is tested in pipeline/rtc; these
// tests cover what WHIP adds: the tracks a publisher sends, and how they end.

var t0 = time.Date(2026, 11, 3, 10, 0, 0, 0, time.UTC)

func newCore() *whip.Core {
	return whip.NewCore(rtc.Timeouts{Connect: 5 * time.Second, DisconnectGrace: 2 * time.Second},
		rtc.Peer{ID: "pub", Node: "n1", Identity: "alice", Name: "Alice"})
}

func trackInfo(id, kind string) whip.TrackInfo {
	if kind == "audio" {
		return whip.TrackInfo{Track: id, Kind: "audio", Codec: "audio/opus", ClockRate: 48000, Channels: 2, Fmtp: "minptime=10;useinbandfec=1"}
	}
	return whip.TrackInfo{Track: id, Kind: "video", Codec: "video/VP8", ClockRate: 90000}
}

func published(id, kind string) events.Payload {
	ti := trackInfo(id, kind)
	return events.TrackPublished{Peer: "pub", Track: id, Kind: ti.Kind, Codec: ti.Codec, ClockRate: ti.ClockRate,
		Channels: ti.Channels, FmtpLine: ti.Fmtp, Layers: []string{"0"}}
}

func TestCoreTracks(t *testing.T) {
	c := newCore()
	out := c.Answered(t0, "10.0.0.1:5000", "obs")
	require.Equal(t, []events.Payload{events.PeerJoined{Peer: "pub", Transport: "whip", Role: "publisher", Node: "n1",
		RemoteAddr: "10.0.0.1:5000", UserAgent: "obs", Identity: "alice", Name: "Alice"}}, out.Events)
	c.Connected(t0)

	require.Equal(t, whip.Output{Events: []events.Payload{published("a", "audio")}}, c.TrackStarted(t0, trackInfo("a", "audio")),
		"audio: no keyframe request")
	require.Equal(t, whip.Output{Events: []events.Payload{published("v", "video")}, PLI: []string{"v"}},
		c.TrackStarted(t0, trackInfo("v", "video")), "video: a keyframe request at once")
	require.Empty(t, c.KeyframeRequested(t0.Add(100*time.Millisecond), "v").PLI, "the first PLI counts toward the throttle")
	require.Equal(t, []string{"a", "v"}, c.Tracks())

	require.Equal(t, whip.Output{Close: rtc.ReasonClosed, Events: []events.Payload{
		events.TrackUnpublished{Peer: "pub", Track: "a"}, events.TrackUnpublished{Peer: "pub", Track: "v"},
		events.NewPeerLeft("pub", "closed"),
	}}, c.Deleted(t0), "every track unpublished in order, then the leave")
	require.Equal(t, whip.Output{}, c.TrackStarted(t0, trackInfo("late", "video")), "nothing after the end")
	require.Equal(t, []string{"a", "v"}, c.Tracks())
}

// TestCoreGolden records one representative publisher session: join, two tracks, keyframe
// requests, a disconnect that recovers, a second that does not. Run with -update to rewrite.
func TestCoreGolden(t *testing.T) {
	const ms = time.Millisecond
	c := newCore()
	inputs := []struct {
		at  time.Duration
		op  string
		run func(now time.Time) whip.Output
	}{
		{0, "answered", func(now time.Time) whip.Output { return c.Answered(now, "10.0.0.1:5000", "obs") }},
		{400 * ms, "connected", c.Connected},
		{600 * ms, "track mic", func(now time.Time) whip.Output { return c.TrackStarted(now, trackInfo("mic", "audio")) }},
		{650 * ms, "track cam", func(now time.Time) whip.Output { return c.TrackStarted(now, trackInfo("cam", "video")) }},
		{700 * ms, "keyframe cam", func(now time.Time) whip.Output { return c.KeyframeRequested(now, "cam") }},
		{1200 * ms, "keyframe cam", func(now time.Time) whip.Output { return c.KeyframeRequested(now, "cam") }},
		{5000 * ms, "disconnected", c.Disconnected},
		{6000 * ms, "tick", c.Tick},
		{6500 * ms, "connected", c.Connected},
		{9000 * ms, "disconnected", c.Disconnected},
		{11000 * ms, "tick", c.Tick},
		{12000 * ms, "keyframe cam", func(now time.Time) whip.Output { return c.KeyframeRequested(now, "cam") }},
		{13000 * ms, "deleted", c.Deleted},
	}
	var b strings.Builder
	for _, in := range inputs {
		out := in.run(t0.Add(in.at))
		fmt.Fprintf(&b, "%-7s %-13s -> %s%s\n", in.at, in.op, c.State(), out)
	}
	path := filepath.Join("testdata", "session.golden")
	if *update {
		require.NoError(t, os.WriteFile(path, []byte(b.String()), 0o644))
	}
	want, err := os.ReadFile(path)
	require.NoError(t, err, "run with -update to create it")
	require.Equal(t, string(want), b.String())
}
