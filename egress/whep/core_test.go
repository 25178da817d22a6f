package whep_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/egress/whep"
	"github.com/jetmedia/jetmedia/events"
	"github.com/jetmedia/jetmedia/pipeline/rtc"
)

// The lifecycle itself (timeouts, grace, throttle, reasons) is tested in pipeline/rtc; these
// tests cover what WHEP adds: the subscriptions of a viewer, and how they end.

var t0 = time.Date(2026, 11, 3, 10, 0, 0, 0, time.UTC)

func newCore() *whep.Core {
	return whep.NewCore(rtc.Timeouts{}, rtc.Peer{ID: "view", Node: "n2", Identity: "bob"}, "pub", []string{"a", "v"})
}

func TestCoreSubscriptions(t *testing.T) {
	const ms = time.Millisecond
	tests := []struct {
		name string
		end  func(c *whep.Core, now time.Time) whep.Output
		want rtc.Reason
	}{
		{"DELETE", (*whep.Core).Deleted, rtc.ReasonClosed},
		{"ICE failed", (*whep.Core).Failed, rtc.ReasonDisconnected},
		{"node stopping", (*whep.Core).Shutdown, rtc.ReasonShutdown},
		{"never connected", func(c *whep.Core, now time.Time) whep.Output { return c.Tick(now.Add(time.Minute)) }, rtc.ReasonTimeout},
		{"every track unpublished", func(c *whep.Core, now time.Time) whep.Output {
			if out := c.Unpublished(now, "a"); out.Close != "" || len(out.Events) > 0 {
				return out // one track of two gone: the session must go on
			}
			if out := c.Unpublished(now, "other"); out.Close != "" {
				return out // a track it does not play changes nothing
			}
			return c.Unpublished(now, "v")
		}, rtc.ReasonUnpublished},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newCore()
			require.Equal(t, []events.Payload{
				events.PeerJoined{Peer: "view", Transport: "whep", Role: "viewer", Node: "n2", RemoteAddr: "10.0.0.2:6000",
					UserAgent: "chrome", Identity: "bob"},
				events.SubscriptionStarted{Peer: "view", Track: "a", Publisher: "pub"},
				events.SubscriptionStarted{Peer: "view", Track: "v", Publisher: "pub"},
			}, c.Answered(t0, "10.0.0.2:6000", "chrome").Events, "joined and subscribed to every track in order")
			require.Empty(t, c.Answered(t0, "", "").Events, "answered once")
			require.Empty(t, c.Bound(t0, "a", false).PLI, "audio needs no keyframe")
			require.Equal(t, []string{"v"}, c.Bound(t0, "v", true).PLI, "video: a keyframe at once")
			require.Empty(t, c.KeyframeRequested(t0.Add(100*ms), "v").PLI, "throttled")
			require.Equal(t, whep.Output{Close: tt.want, Events: []events.Payload{
				events.SubscriptionEnded{Peer: "view", Track: "a"},
				events.SubscriptionEnded{Peer: "view", Track: "v"},
				events.NewPeerLeft("view", string(tt.want)),
			}}, tt.end(c, t0))
			require.Equal(t, rtc.StateClosed, c.State())
			require.Empty(t, c.Bound(t0, "v", true).PLI, "nothing after the end")
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
	require.Equal(t, []string{"v"}, a.Bound(t0, "v", true).PLI)
	require.Equal(t, []string{"v"}, b.Bound(t0.Add(time.Millisecond), "v", true).PLI)
	require.Empty(t, a.KeyframeRequested(t0.Add(2*time.Millisecond), "v").PLI)
	require.Empty(t, b.KeyframeRequested(t0.Add(2*time.Millisecond), "v").PLI)
}
