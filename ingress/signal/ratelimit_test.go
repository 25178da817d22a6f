package signal

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/events"
	"github.com/jetmedia/jetmedia/pipeline/auth"
	"github.com/jetmedia/jetmedia/pipeline/rtc"
)

func TestBucket(t *testing.T) {
	b := newBucket(Rate{PerSecond: 10, Burst: 3})
	for range 3 {
		require.True(t, b.take(t0), "the burst")
	}
	require.False(t, b.take(t0))
	require.False(t, b.take(t0.Add(50*time.Millisecond)), "half a token")
	require.True(t, b.take(t0.Add(100*time.Millisecond)), "one token after 1/rate")
	require.False(t, b.take(t0.Add(100*time.Millisecond)))
	require.False(t, b.take(t0.Add(50*time.Millisecond)), "a clock going back adds nothing")
	for range 3 {
		require.True(t, b.take(t0.Add(time.Hour)), "refilled to the burst, not beyond")
	}
	require.False(t, b.take(t0.Add(time.Hour)))
}

func TestLimitsValidate(t *testing.T) {
	require.NoError(t, Limits{}.Validate())
	require.NoError(t, DefaultLimits().Validate())
	require.Error(t, Limits{Data: Rate{PerSecond: -1, Burst: 5}}.Validate())
	require.Error(t, Limits{Events: Rate{PerSecond: 5}}.Validate())
	require.Equal(t, DefaultLimits(), Limits{}.WithDefaults())
}

// A flooding client: each class has its own bucket; refusals get rate_limited until the
// excess bucket is empty, then the session closes (kicked), with the error first.
func TestCoreRateLimit(t *testing.T) {
	c := NewCore(rtc.Timeouts{}, "r1", "me", "n1", claims(auth.Subscribe, auth.Metadata, auth.Data), false)
	c.SetJoinOptions(JoinOptions{Limits: Limits{Events: Rate{PerSecond: 10, Burst: 2}, Data: Rate{PerSecond: 100, Burst: 3}, Excess: Rate{PerSecond: 1, Burst: 2}}})
	c.Joined(t0, "", "")
	c.KVPut(t0, "r1.peer.bob", val(t, peerRecord{Peer: "bob", Transport: "sdk"}))
	c.KVReady(t0)
	update := func(md string) Output { return c.Message(t0, ClientMessage{Type: TypeUpdate, Metadata: md}) }
	data := func() Output { p := "x"; return c.Message(t0, ClientMessage{Type: TypeData, Payload: &p}) }

	require.Equal(t, []events.Payload{events.PeerUpdated{Peer: "me", Metadata: "a"}}, update("a").Events)
	require.Len(t, update("b").Events, 1)
	for range 3 {
		require.Len(t, data().Data, 1, "data has a bucket of its own")
	}
	out := update("c")
	require.Empty(t, out.Events)
	require.Equal(t, []string{TypeError}, types(out.Send))
	require.Equal(t, CodeRateLimited, out.Send[0].Code)
	require.Contains(t, out.Send[0].Message, "update refused")
	require.Equal(t, CodeRateLimited, data().Send[0].Code)
	require.False(t, c.Closed())

	// A tenth of a second later one event token is back, but not a whole excess token.
	later := t0.Add(100 * time.Millisecond)
	require.Len(t, c.Message(later, ClientMessage{Type: TypeUpdate, Metadata: "d"}).Events, 1)
	out = c.Message(later, ClientMessage{Type: TypeMute, Track: "x", Muted: bptr(true)})
	require.True(t, c.Closed(), "kept flooding")
	require.Equal(t, rtc.ReasonKicked, out.Close)
	require.Equal(t, CodeRateLimited, out.Send[0].Code)
	require.Contains(t, out.Send[0].Message, "session closed")
	require.Equal(t, []events.Payload{events.NewPeerLeft("me", "kicked")}, out.Events)
}

// update needs the metadata grant, or publish; a subscribe-only token is refused.
func TestCoreUpdateGrant(t *testing.T) {
	for _, tc := range []struct {
		grants []auth.Grant
		ok     bool
	}{
		{[]auth.Grant{auth.Subscribe}, false},
		{[]auth.Grant{auth.Subscribe, auth.Data}, false},
		{[]auth.Grant{auth.Subscribe, auth.Metadata}, true},
		{[]auth.Grant{auth.Publish}, true},
	} {
		c := NewCore(rtc.Timeouts{}, "r1", "me", "n1", claims(tc.grants...), false)
		c.KVReady(t0)
		out := c.Message(t0, ClientMessage{Type: TypeUpdate, Metadata: "m"})
		if tc.ok {
			require.Len(t, out.Events, 1, "%v", tc.grants)
			continue
		}
		require.Empty(t, out.Events, "%v", tc.grants)
		require.Equal(t, CodeForbidden, out.Send[0].Code)
		require.Contains(t, out.Send[0].Message, `"metadata" grant`)
	}
}

// An update or mute the log refused is not taken for recorded: the client is told, and the
// same update or mute again records again.
func TestCoreUnrecorded(t *testing.T) {
	c := publishedCore(t, 0)
	out := c.Message(t0, ClientMessage{Type: TypeUpdate, Metadata: "m1"})
	require.Len(t, out.Events, 1)
	mute := c.Message(t0, ClientMessage{Type: TypeMute, Track: "t1", Muted: bptr(false)})
	require.Len(t, mute.Events, 1)
	un := c.Unrecorded(t0, append(out.Events, mute.Events...), errTest("disk full"))
	require.Equal(t, CodeUnavailable, un.Send[0].Code)
	require.Contains(t, un.Send[0].Message, "peer.updated")
	require.Contains(t, un.Send[0].Message, "disk full")
	require.Equal(t, out.Events, c.Message(t0, ClientMessage{Type: TypeUpdate, Metadata: "m1"}).Events, "retried")
	require.Equal(t, mute.Events, c.Message(t0, ClientMessage{Type: TypeMute, Track: "t1", Muted: bptr(false)}).Events, "retried")
}

type errTest string

func (e errTest) Error() string { return string(e) }
