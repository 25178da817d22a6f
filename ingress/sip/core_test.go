package sip

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/events"
	"github.com/jetmedia/jetmedia/pipeline/rtc"
)

var t0 = time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)

func types(out Output) []string {
	var s []string
	for _, e := range out.Events {
		s = append(s, e.EventType())
	}
	return s
}

func connected(t *testing.T, timers Timers, sessionTimer time.Duration) *Core {
	t.Helper()
	c := NewCore(rtc.Peer{ID: "c1", Node: "n1", Identity: "sip:alice"}, timers)
	out := c.Invited(t0, "127.0.0.1:5060", "baresip", false, sessionTimer)
	require.Equal(t, []string{events.TypePeerJoined}, types(out))
	j := out.Events[0].(events.PeerJoined)
	require.Equal(t, events.TransportSIP, j.Transport)
	require.Equal(t, Role, j.Role)
	c.Acked(t0)
	require.Equal(t, []string{events.TypeTrackPublished}, types(c.TrackStarted(t0, TrackInfo{Track: "a1", Kind: "audio"})))
	return c
}

func TestCoreByeEndsWithCause(t *testing.T) {
	c := connected(t, Timers{}, 0)
	out := c.Bye(t0.Add(time.Minute))
	require.Equal(t, rtc.ReasonClosed, out.Close)
	require.Equal(t, []string{events.TypeTrackUnpublished, events.TypePeerLeft}, types(out))
	require.Equal(t, events.ByClient, out.Events[1].(events.PeerLeft).Cause.By)
	require.Empty(t, c.Bye(t0.Add(2*time.Minute)).Events, "a second end records nothing")
}

func TestCoreTimers(t *testing.T) {
	t.Run("no ACK", func(t *testing.T) {
		c := NewCore(rtc.Peer{ID: "c1"}, Timers{})
		c.Invited(t0, "", "", false, 0)
		require.Empty(t, c.Tick(t0.Add(31*time.Second)).Close)
		require.Equal(t, rtc.ReasonTimeout, c.Tick(t0.Add(32*time.Second)).Close)
	})
	t.Run("media timeout, not while held", func(t *testing.T) {
		c := connected(t, Timers{Media: 10 * time.Second}, 0)
		c.Reinvited(t0.Add(time.Second), true, 0)
		require.Empty(t, c.Tick(t0.Add(time.Hour)).Close, "a held call sends no media")
		c.Reinvited(t0.Add(time.Hour), false, 0)
		c.Media(t0.Add(time.Hour + 5*time.Second))
		require.Empty(t, c.Tick(t0.Add(time.Hour+14*time.Second)).Close)
		require.Equal(t, rtc.ReasonDisconnected, c.Tick(t0.Add(time.Hour+15*time.Second)).Close)
	})
	t.Run("session timer", func(t *testing.T) {
		c := connected(t, Timers{}, 90*time.Second)
		c.Media(t0.Add(80 * time.Second))
		c.Reinvited(t0.Add(80*time.Second), false, 90*time.Second)
		for s := 81; s < 170; s += 5 {
			c.Media(t0.Add(time.Duration(s) * time.Second))
			require.Empty(t, c.Tick(t0.Add(time.Duration(s)*time.Second)).Close, "refreshed at 80 s")
		}
		c.Media(t0.Add(170 * time.Second))
		out := c.Tick(t0.Add(170 * time.Second))
		require.Equal(t, rtc.ReasonTimeout, out.Close)
		require.Equal(t, []string{events.TypeTrackUnpublished, events.TypePeerLeft}, types(out))
	})
}

func TestCoreDTMFRateLimited(t *testing.T) {
	c := connected(t, Timers{DTMFRate: 1, DTMFBurst: 3}, 0)
	var digits []string
	for i := range 10 {
		out := c.Digit(t0.Add(time.Duration(i)*10*time.Millisecond), Press{Digit: "5", DurationMS: 100})
		for _, e := range out.Events {
			digits = append(digits, e.(events.DTMFReceived).Digit)
		}
	}
	require.Equal(t, "555", strings.Join(digits, ""))
	require.Equal(t, 7, c.DroppedDTMF)
	out := c.Digit(t0.Add(2*time.Second), Press{Digit: "#"})
	require.Equal(t, []string{events.TypeDTMFReceived}, types(out), "the bucket refills")
	c.Bye(t0.Add(3 * time.Second))
	require.Empty(t, c.Digit(t0.Add(4*time.Second), Press{Digit: "1"}).Events)
}
