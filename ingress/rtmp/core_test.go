package rtmp_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/events"
	"github.com/jetmedia/jetmedia/ingress/rtmp"
	"github.com/jetmedia/jetmedia/pipeline/rtc"
)

var t0 = time.Date(2026, 12, 6, 21, 0, 0, 0, time.UTC)

func newCore() *rtmp.Core {
	return rtmp.NewCore(rtc.Peer{ID: "pub", Node: "n1", Identity: "obs-user", Name: "OBS"})
}

var (
	video = rtmp.TrackInfo{Track: "v", Kind: "video", Codec: rtmp.H264Codec, ClockRate: rtmp.H264ClockRate,
		Fmtp: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42c01e"}
	audio = rtmp.TrackInfo{Track: "a", Kind: "audio", Codec: rtmp.OpusCodec, ClockRate: rtmp.OpusClockRate,
		Channels: rtmp.OpusChannels, Fmtp: rtmp.OpusFmtp}
)

func published(t rtmp.TrackInfo) events.Payload {
	return events.TrackPublished{Peer: "pub", Track: t.Track, Kind: t.Kind, Codec: t.Codec, ClockRate: t.ClockRate,
		Channels: t.Channels, FmtpLine: t.Fmtp, Layers: []string{"0"}}
}

// TestCoreSession: an RTMP publisher joins with transport rtmp, is connected at once, publishes
// its tracks, never times out while its connection lasts, and unpublishes them before it
// leaves for the reason its connection ended with.
func TestCoreSession(t *testing.T) {
	for _, tc := range []struct {
		name   string
		end    func(c *rtmp.Core, now time.Time) rtmp.Output
		reason rtc.Reason
	}{
		{"deleteStream", (*rtmp.Core).StreamDeleted, rtc.ReasonClosed},
		{"connection lost", (*rtmp.Core).ConnectionLost, rtc.ReasonDisconnected},
		{"node shutdown", (*rtmp.Core).Shutdown, rtc.ReasonShutdown},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCore()
			require.Equal(t, rtmp.Output{}, c.TrackStarted(t0, video), "no track before the publish is accepted")
			out := c.Published(t0, "10.0.0.1:50000", "FMLE/3.0 (compatible; obs-studio/30.0)")
			require.Equal(t, []events.Payload{events.PeerJoined{Peer: "pub", Transport: events.TransportRTMP, Role: rtmp.Role,
				Node: "n1", RemoteAddr: "10.0.0.1:50000", UserAgent: "FMLE/3.0 (compatible; obs-studio/30.0)",
				Identity: "obs-user", Name: "OBS"}}, out.Events)
			require.Equal(t, rtc.StateConnected, c.State())
			require.Equal(t, rtmp.Output{}, c.Published(t0, "x", "y"), "one join")

			require.Equal(t, rtmp.Output{Events: []events.Payload{published(video)}}, c.TrackStarted(t0, video))
			require.Equal(t, rtmp.Output{Events: []events.Payload{published(audio)}}, c.TrackStarted(t0, audio))
			require.Equal(t, rtmp.Output{}, c.Tick(t0.Add(time.Hour)), "no connect timeout or grace: TCP decides")

			require.Equal(t, rtmp.Output{Close: tc.reason, Events: []events.Payload{
				events.TrackUnpublished{Peer: "pub", Track: "v"}, events.TrackUnpublished{Peer: "pub", Track: "a"},
				events.NewPeerLeft("pub", string(tc.reason)),
			}}, tc.end(c, t0.Add(time.Minute)))
			require.Equal(t, rtmp.Output{}, c.ConnectionLost(t0.Add(time.Minute)), "one end")
			require.Equal(t, rtmp.Output{}, c.TrackStarted(t0, video), "nothing after the end")
			require.Equal(t, []string{"v", "a"}, c.Tracks())
		})
	}
}

// TestCoreEndBeforeJoin: a session that ends before its join was recorded writes nothing.
func TestCoreEndBeforeJoin(t *testing.T) {
	c := newCore()
	require.Equal(t, rtmp.Output{Close: rtc.ReasonShutdown}, c.Shutdown(t0))
	require.Equal(t, rtmp.Output{}, c.Published(t0, "a", "b"))
}
