package bwe

import (
	"sync/atomic"
	"time"
)

// HistorySize is how many packets a History remembers: at a viewer's 300 packets/s (a 2.5
// Mbit/s video track and audio) about 7 s, far longer than feedback takes to come back.
const HistorySize = 1 << 11

// History is the send time and size of a connection's last HistorySize packets by
// transport-wide sequence number. Sent may be called from several goroutines at once (each
// with its own sequence number) and Lookup beside them, without a lock: each slot is a pair
// of atomics written seqlock-fashion, so a lookup racing the slot's reuse misses rather than
// mixing two packets. 16 bytes a slot, 32 KiB a connection.
type History struct {
	slots [HistorySize]slot
}

type slot struct {
	at   atomic.Int64  // send time, +1 so that 0 is empty
	meta atomic.Uint32 // 1<<31 | seq<<15 | size (bytes, at most 32767); 0 while written
}

// Sent records that packet seq of size bytes was sent at (monotonic, from any fixed origin).
func (h *History) Sent(seq uint16, at time.Duration, size int) {
	s := &h.slots[int(seq)&(HistorySize-1)]
	s.meta.Store(0)
	s.at.Store(int64(at) + 1)
	s.meta.Store(meta(seq, size))
}

func meta(seq uint16, size int) uint32 {
	return 1<<31 | uint32(seq)<<15 | uint32(min(max(size, 0), 1<<15-1))
}

// Lookup returns packet seq's send time and size; ok is false when it was never sent or its
// slot has been reused since.
func (h *History) Lookup(seq uint16) (at time.Duration, size int, ok bool) {
	s := &h.slots[int(seq)&(HistorySize-1)]
	m := s.meta.Load()
	if m == 0 || uint16(m>>15) != seq {
		return 0, 0, false
	}
	t := s.at.Load()
	if s.meta.Load() != m || t == 0 {
		return 0, 0, false
	}
	return time.Duration(t - 1), int(m & (1<<15 - 1)), true
}
