package signal

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// roomOf is a handler with n sessions in room r whose watches have seen seq 0 (no sockets,
// no PeerConnections: RoomWritten touches only the index and each session's counters).
func roomOf(n int) (*Handler, []*conn) {
	h := &Handler{rooms: map[string]map[*conn]struct{}{"r": {}}}
	conns := make([]*conn, n)
	for i := range conns {
		conns[i] = &conn{behind: make(chan struct{}, 1)}
		h.rooms["r"][conns[i]] = struct{}{}
	}
	return h, conns
}

// TestRoomWritten: a write wakes the sessions whose watch has not delivered it, once however
// many writes come before their watch goroutine looks; sessions of other rooms and sessions
// that are caught up are left alone; an older write never lowers what a session waits for.
func TestRoomWritten(t *testing.T) {
	h, conns := roomOf(2)
	conns[1].seen.Store(10)
	h.RoomWritten("other", 5)
	require.Empty(t, conns[0].behind)
	h.RoomWritten("r", 5)
	h.RoomWritten("r", 7)
	h.RoomWritten("r", 6)
	require.Len(t, conns[0].behind, 1)
	require.Equal(t, uint64(7), conns[0].written.Load())
	require.Empty(t, conns[1].behind, "its watch delivered 10 already")
	require.Equal(t, uint64(7), conns[1].written.Load())
}

// BenchmarkRoomWritten: the cost of one write of a room's record for the node's sessions of a
// room of 100 (run for every event of every room the node has sessions in).
func BenchmarkRoomWritten(b *testing.B) {
	h, conns := roomOf(100)
	b.ReportAllocs()
	seq := uint64(0)
	for b.Loop() {
		seq++
		h.RoomWritten("r", seq)
		for _, c := range conns {
			c.seen.Store(seq) // the watches deliver it
			select {
			case <-c.behind:
			default:
			}
		}
	}
}
