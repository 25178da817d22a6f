package mediabus

import (
	"encoding/binary"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/pion/rtcp"
	"github.com/stretchr/testify/require"
)

func rtpOf(ssrc uint32, seq uint16) []byte {
	b := make([]byte, 20)
	b[0] = 0x80
	binary.BigEndian.PutUint16(b[2:4], seq)
	binary.BigEndian.PutUint32(b[8:12], ssrc)
	return b
}

func TestNACKRoundTrip(t *testing.T) {
	for _, n := range []int{1, 2, 16, 17, 18, 40, maxGap} {
		b := nackOf(9, 65530, n)
		// pion reads it as the same NACK.
		pk, err := rtcp.Unmarshal(b)
		require.NoError(t, err)
		nack := pk[0].(*rtcp.TransportLayerNack)
		require.Equal(t, uint32(9), nack.MediaSSRC)
		var want []uint16
		for i := range n {
			want = append(want, 65530+uint16(i))
		}
		var fromPion []uint16
		for _, p := range nack.Nacks {
			fromPion = append(fromPion, p.PacketList()...)
		}
		require.Equal(t, want, fromPion)
		ssrc, got := parseNACK(b)
		require.Equal(t, uint32(9), ssrc)
		require.Equal(t, want, got)
	}
	for _, bad := range [][]byte{nil, {0x80, 201, 0, 1}, make([]byte, 16), {0x81, 205, 0, 9, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1, 0, 0}} {
		_, seqs := parseNACK(bad)
		require.Nil(t, seqs)
	}
}

func TestGapWatch(t *testing.T) {
	var g gapWatch
	for _, tc := range []struct {
		ssrc uint32
		seq  uint16
		from uint16
		n    int
	}{
		{1, 100, 0, 0},
		{1, 101, 0, 0},
		{1, 104, 102, 2},
		{1, 103, 0, 0}, // a repair arriving: not newer
		{1, 105, 0, 0},
		{1, 105 + maxGap + 2, 0, 0}, // too long to be loss
		{2, 7, 0, 0},                // a new source starts over
		{2, 9, 8, 1},
		{2, 65535, 0, 0}, // far back
	} {
		_, from, n := g.missing(rtpOf(tc.ssrc, tc.seq))
		require.Equal(t, tc.n, n, "seq %d", tc.seq)
		require.Equal(t, tc.from, from, "seq %d", tc.seq)
	}
	_, _, n := g.missing([]byte("not rtp"))
	require.Zero(t, n)
}

// TestRepairBetweenNodes: a packet the publishing node put on NATS that never reached the
// other node is asked for by that node's subscription when the next one shows the gap, and
// delivered from the publishing node's cache.
func TestRepairBetweenNodes(t *testing.T) {
	srv, conn := StartTestServer(t, "repair")
	pubNode, err := NewLocalMediaBus(conn("a-fb"), conn("a-rtp", nats.NoEcho()), srv.Interest)
	require.NoError(t, err)
	far, err := NewLocalMediaBus(conn("b-fb"), conn("b-rtp", nats.NoEcho()), srv.Interest)
	require.NoError(t, err)

	var mu sync.Mutex
	var got []uint16
	sub, err := far.Subscribe("r", "t", "0", func(b []byte) {
		mu.Lock()
		got = append(got, binary.BigEndian.Uint16(b[2:4]))
		mu.Unlock()
	})
	require.NoError(t, err)
	defer sub.Unsubscribe()
	require.NoError(t, far.Flush())

	s := pubNode.Sender("r", "t", "0")
	require.NoError(t, s.Send(rtpOf(5, 10)))
	require.NoError(t, pubNode.Flush())
	// 11 and 12 are lost between the nodes: published (so cached), never delivered.
	s.remember(rtpOf(5, 11))
	s.remember(rtpOf(5, 12))
	require.NoError(t, s.Send(rtpOf(5, 13)))
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) == 4
	}, 10*time.Second, 10*time.Millisecond)
	mu.Lock()
	require.Equal(t, []uint16{10, 13, 11, 12}, got, "the repairs arrive after the packet that showed the gap")
	mu.Unlock()
	require.EqualValues(t, 2, far.Stats().RepairsAsked)
	require.EqualValues(t, 1, pubNode.Stats().RepairRequests)
	require.EqualValues(t, 2, pubNode.Stats().Repaired)
}

// BenchmarkRepairGapWatch is what a publishing node adds per packet it publishes to NATS
// (the repair cache's copy) and a subscribing node per packet it receives (the gap check).
func BenchmarkRepairGapWatch(b *testing.B) {
	c := new(repairCache)
	var g gapWatch
	pkt := make([]byte, 1200)
	pkt[0] = 0x80
	b.ReportAllocs()
	b.SetBytes(int64(len(pkt)))
	seq := uint16(0)
	for b.Loop() {
		seq++
		binary.BigEndian.PutUint16(pkt[2:4], seq)
		c.put(pkt)
		if _, _, n := g.missing(pkt); n != 0 {
			b.Fatal("gap")
		}
	}
}
