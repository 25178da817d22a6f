package mediabus_test

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/pipeline/mediabus"
)

// A layer this node publishes is watched while a local viewer or another node's subscription
// wants it, and unwatched once they have gone; a bus without interest always says watched.
func TestWatched(t *testing.T) {
	srv, conn := mediabus.StartTestServer(t, "watched")
	a, err := mediabus.NewLocalMediaBus(conn("a-fb"), conn("a-rtp", nats.NoEcho()), srv.Interest)
	require.NoError(t, err)
	sender := a.Sender("r", "t", "f")
	require.False(t, a.Watched("r", "t", "f"))

	local, err := a.Subscribe("r", "t", "f", func([]byte) {})
	require.NoError(t, err)
	require.True(t, a.Watched("r", "t", "f"), "a viewer on this node")
	require.False(t, a.Watched("r", "t", "q"), "another layer")
	require.NoError(t, local.Unsubscribe())
	require.False(t, a.Watched("r", "t", "f"))

	remote := mediabus.NewMediaBus(conn("remote"))
	sub, err := remote.Subscribe("r", "t", "f", func([]byte) {})
	require.NoError(t, err)
	require.NoError(t, remote.Flush())
	require.Eventually(t, func() bool { return a.Watched("r", "t", "f") }, 5*time.Second, 10*time.Millisecond, "another node's viewer")
	require.NoError(t, sub.Unsubscribe())
	require.NoError(t, remote.Flush())
	require.Eventually(t, func() bool { return !a.Watched("r", "t", "f") }, 5*time.Second, 10*time.Millisecond)
	require.NoError(t, sender.Send([]byte("x")))

	require.True(t, remote.Watched("r", "t", "f"), "a bus that cannot tell says watched")
}
