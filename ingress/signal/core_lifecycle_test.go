package signal

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/events"
	"github.com/jetmedia/jetmedia/pipeline/auth"
	"github.com/jetmedia/jetmedia/pipeline/rtc"
)

// The room session composes the shared lifecycle: its keyframe requests are throttled by the
// core (not the shell's clock), and the connect timeout runs once media is negotiated.
func TestCoreLifecycle(t *testing.T) {
	const ms = time.Millisecond
	timeouts := rtc.Timeouts{Connect: 5 * time.Second, DisconnectGrace: 2 * time.Second}
	newCore := func() *Core {
		c := NewCore(timeouts, "r1", "me", "n1", claims(auth.Publish, auth.Subscribe), false)
		c.Joined(t0, "", "")
		return c
	}

	t.Run("a published video track gets its first PLI from the core, then the throttle", func(t *testing.T) {
		c := newCore()
		c.Message(t0, ClientMessage{Type: TypePublish, Kind: "video"})
		c.Message(t0, ClientMessage{Type: TypePublish, Kind: "audio"})
		out, ok := c.TrackStarted(t0, TrackSpec{Track: "v", Peer: "me", Kind: "video", Codec: "video/VP8"})
		require.True(t, ok)
		require.Equal(t, []string{"v"}, out.PLI)
		out, ok = c.TrackStarted(t0, TrackSpec{Track: "a", Peer: "me", Kind: "audio", Codec: "audio/opus"})
		require.True(t, ok)
		require.Empty(t, out.PLI, "audio needs no keyframe")
		require.Empty(t, c.KeyframeRequested(t0.Add(100*ms), "v").PLI, "a viewer's request inside the interval")
		require.Equal(t, []string{"v"}, c.KeyframeRequested(t0.Add(300*ms), "v").PLI)
	})
	t.Run("ended in the log: closed, nothing recorded, not even its tracks' end", func(t *testing.T) {
		c := newCore()
		c.Message(t0, ClientMessage{Type: TypePublish, Kind: "audio"})
		_, ok := c.TrackStarted(t0, TrackSpec{Track: "a", Peer: "me", Kind: "audio", Codec: "audio/opus"})
		require.True(t, ok)
		out := c.EndedInLog(t0.Add(time.Second))
		require.Equal(t, rtc.ReasonEndedInLog, out.Close)
		require.Empty(t, out.Events)
		require.True(t, c.Closed())
		require.Empty(t, c.EndedInLog(t0.Add(2*time.Second)).Close, "once")
		require.Empty(t, c.Message(t0, ClientMessage{Type: TypeLeave}).Events, "nothing after it")
	})
	t.Run("a data-only peer never times out", func(t *testing.T) {
		c := newCore()
		require.Empty(t, c.Tick(t0.Add(time.Hour)).Events)
		require.False(t, c.Closed())
	})
	t.Run("negotiated but never connected: timeout", func(t *testing.T) {
		c := newCore()
		c.Negotiating(t0)
		require.Empty(t, c.Tick(t0.Add(5*time.Second-ms)).Close)
		out := c.Tick(t0.Add(5 * time.Second))
		require.Equal(t, rtc.ReasonTimeout, out.Close)
		require.Equal(t, []events.Payload{events.NewPeerLeft("me", "timeout")}, out.Events)
		require.True(t, c.Closed())
		require.Empty(t, c.Message(t0, ClientMessage{Type: TypeLeave}).Events, "closed once")
	})
	t.Run("connectivity lost past the grace: disconnected", func(t *testing.T) {
		c := newCore()
		c.Negotiating(t0)
		c.Connected(t0.Add(time.Second))
		c.Disconnected(t0.Add(time.Minute))
		require.Empty(t, c.Tick(t0.Add(time.Minute+time.Second)).Close)
		require.Equal(t, rtc.ReasonDisconnected, c.Tick(t0.Add(time.Minute+2*time.Second)).Close)
	})
	t.Run("every end has its reason", func(t *testing.T) {
		for reason, end := range map[rtc.Reason]func(c *Core) rtc.Output{
			rtc.ReasonClosed:       func(c *Core) rtc.Output { return c.Message(t0, ClientMessage{Type: TypeLeave}).Output },
			rtc.ReasonDisconnected: func(c *Core) rtc.Output { return c.Failed(t0) },
			rtc.ReasonShutdown:     func(c *Core) rtc.Output { return c.Shutdown(t0) },
		} {
			out := end(newCore())
			require.Equal(t, reason, out.Close)
			require.Equal(t, []events.Payload{events.NewPeerLeft("me", string(reason))}, out.Events)
		}
	})
}
