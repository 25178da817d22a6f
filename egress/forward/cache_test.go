package forward_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/egress/forward"
)

func TestCache(t *testing.T) {
	c := new(forward.Cache)
	dst := make([]byte, 1500)

	require.Zero(t, c.Get(0, 0, dst), "empty cache misses, even for ssrc 0 seq 0")

	p := packet(t, 7, 100, 1, false, "hello")
	c.Put(p)
	n := c.Get(7, 100, dst)
	require.Equal(t, p, dst[:n])

	p[12] = 'X'
	require.Equal(t, "hello", string(parse(t, dst[:c.Get(7, 100, dst)]).Payload), "Put copies")

	require.Zero(t, c.Get(8, 100, dst), "wrong ssrc misses")
	require.Zero(t, c.Get(7, 101, dst), "never stored")
	require.Zero(t, c.Get(7, 100+forward.CacheSize, dst), "same slot, other seq")

	// Overwrite after wrap: the slot now holds the newer packet.
	newer := packet(t, 7, 100+forward.CacheSize, 2, false, "newer")
	c.Put(newer)
	require.Zero(t, c.Get(7, 100, dst), "overwritten")
	n = c.Get(7, 100+forward.CacheSize, dst)
	require.Equal(t, newer, dst[:n])

	// Sequence wrap of uint16 lands in consistent slots.
	w := packet(t, 7, 65535, 3, false, "w")
	c.Put(w)
	n = c.Get(7, 65535, dst)
	require.Equal(t, w, dst[:n])

	// Packets that cannot be RTP or are too big are not stored.
	c.Put(p[:forward.MinHeader-1])
	big := packet(t, 7, 200, 1, false, string(make([]byte, 1500)))
	c.Put(big)
	require.Zero(t, c.Get(7, 200, dst))
}

func TestCacheKeepsAWindow(t *testing.T) {
	c := new(forward.Cache)
	dst := make([]byte, 1500)
	for seq := range uint16(3 * forward.CacheSize) {
		c.Put(packet(t, 1, seq, 0, false, "p"))
	}
	for seq := range uint16(3 * forward.CacheSize) {
		n := c.Get(1, seq, dst)
		if seq >= 2*forward.CacheSize {
			require.NotZero(t, n, "seq %d within the last CacheSize", seq)
			require.Equal(t, seq, parse(t, dst[:n]).SequenceNumber)
		} else {
			require.Zero(t, n, "seq %d is older than the window", seq)
		}
	}
}
