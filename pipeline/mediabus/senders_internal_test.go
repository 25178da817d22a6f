package mediabus

import (
	"runtime"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"
)

// A local bus forgets a publisher's sender once the sender is gone, and keeps the one that
// replaced it under the same subject.
func TestLocalBusForgetsGoneSenders(t *testing.T) {
	srv, conn := StartTestServer(t, "senders")
	b, err := NewLocalMediaBus(conn("fb"), conn("rtp", nats.NoEcho()), srv.Interest)
	require.NoError(t, err)
	count := func() int {
		b.mu.RLock()
		defer b.mu.RUnlock()
		return len(b.senders)
	}
	for i := range 10 {
		require.NoError(t, b.Sender("r", string(rune('a'+i)), "0").Send([]byte("x")))
	}
	kept := b.Sender("r", "a", "0") // the same subject as a gone one
	require.True(t, b.publishing(kept.subject))
	require.Eventually(t, func() bool {
		runtime.GC()
		return count() == 1
	}, 10*time.Second, 10*time.Millisecond, "senders left: %d", count())
	require.True(t, b.publishing(kept.subject))
	runtime.KeepAlive(kept)
	require.Eventually(t, func() bool {
		runtime.GC()
		return count() == 0
	}, 10*time.Second, 10*time.Millisecond)
}
