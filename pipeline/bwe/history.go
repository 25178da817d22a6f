package bwe

import (
	"runtime"
	"sync/atomic"
	"time"
)

// HistorySize is how many packets a History remembers: at a viewer's 300 packets/s (a 2.5
// Mbit/s video track and audio) about 7 s, far longer than feedback takes to come back.
const HistorySize = 1 << 11

// History is the send time and size of a connection's last HistorySize packets by
// transport-wide sequence number. Sent may be called from several goroutines at once (each
// with its own sequence number) and Lookup beside them, without a mutex: each slot is a pair
// of atomics; a writer takes the slot with a compare-and-swap on its meta word (two writers
// 2048 packets apart may meet at one slot; a plain seqlock let them interleave and pair one
// packet's time with the other's sequence number) and a lookup that races a write misses
// rather than mixing two packets. 16 bytes a slot, 32 KiB a connection.
type History struct {
	slots [HistorySize]slot
}

type slot struct {
	at   atomic.Int64  // send time, +1 so that 0 is empty
	meta atomic.Uint64 // filled | seq<<15 | size (bytes, at most 32767); writing while held
}

const (
	slotFilled  = 1 << 32
	slotWriting = 1 << 33
)

// Sent records that packet seq of size bytes was sent at (monotonic, from any fixed origin).
func (h *History) Sent(seq uint16, at time.Duration, size int) {
	s := &h.slots[int(seq)&(HistorySize-1)]
	for {
		m := s.meta.Load()
		if m&slotWriting == 0 && s.meta.CompareAndSwap(m, slotWriting) {
			break
		}
		runtime.Gosched() // another sender is writing this slot; it takes a few ns
	}
	s.at.Store(int64(at) + 1)
	s.meta.Store(meta(seq, size))
}

func meta(seq uint16, size int) uint64 {
	return slotFilled | uint64(seq)<<15 | uint64(min(max(size, 0), 1<<15-1))
}

// Lookup returns packet seq's send time and size; ok is false when it was never sent or its
// slot has been reused since (or is being written).
func (h *History) Lookup(seq uint16) (at time.Duration, size int, ok bool) {
	s := &h.slots[int(seq)&(HistorySize-1)]
	m := s.meta.Load()
	if m&slotFilled == 0 || uint16(m>>15) != seq {
		return 0, 0, false
	}
	t := s.at.Load()
	if s.meta.Load() != m || t == 0 {
		return 0, 0, false
	}
	return time.Duration(t - 1), int(m & (1<<15 - 1)), true
}
