package signal

import (
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// watchGrace is how long a session's room watch may stay behind the node's watch of room
// records (RoomWritten) before the session takes it for dead and replaces it. A live watch
// delivers a write within milliseconds (both read the same stream); the grace only has to
// outlast a loaded machine's scheduling.
const watchGrace = 2 * time.Second

// watchRetryMax bounds the wait between replacements of a watch that stays behind.
const watchRetryMax = 30 * time.Second

// RoomWritten tells the room's sessions on this node that the rooms bucket wrote the room's
// record at seq (the projection writes it last for every event it folds). The wiring calls it
// from the node's one watch of room records (projections.RunRoomRecords). A session whose own
// watch of the room has not delivered seq within watchGrace replaces that watch and resyncs:
// nats.go's watch, whose consumer lived on a node that died, can stay silent for good without
// telling (issue 13), and its client would keep the dead node's peers and tracks. It never
// blocks; its cost is a few atomic operations per session of the room.
func (h *Handler) RoomWritten(room string, seq uint64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for c := range h.rooms[room] {
		c.roomWritten(seq)
	}
}

// roomWritten notes a write of the room's record; it wakes the watch when its own watch has
// not delivered it yet.
func (c *conn) roomWritten(seq uint64) {
	for {
		w := c.written.Load()
		if seq <= w {
			return
		}
		if c.written.CompareAndSwap(w, seq) {
			break
		}
	}
	if c.seen.Load() >= seq {
		return
	}
	select {
	case c.behind <- struct{}{}:
	default:
	}
}

// roomWatch is a session's watch of its room's KV state, run by conn.watch: the current
// nats.go watcher and its timers.
type roomWatch struct {
	c *conn
	w jetstream.KeyWatcher
	// initDone: the current watcher's initial values are done; replaced: it replaces another,
	// so they are a resync.
	initDone, replaced bool
	// stall: the initial values' stall (watchStall); late: armed while the watch is behind
	// the node's watch of room records.
	stall, late *time.Timer
	lateArmed   bool
	// target is the room's newest write when late was armed: the watch must have delivered
	// it by then (newer ones get their own grace, so a busy room's watch, always a little
	// behind the newest write, is never taken for dead).
	target uint64
	// tries: replacements since the watch was last seen caught up.
	tries int
	// retired: the stops of replaced watchers, which wait for a JetStream request (nats.go
	// deletes the consumer), up to its 5 s timeout when the consumer's server is gone.
	retired sync.WaitGroup
}

// watch feeds the room's KV state to the loop until the session ends, replacing a watch that
// stays behind the node's (see RoomWritten) or ends.
func (c *conn) watch(first jetstream.KeyWatcher) {
	rw := &roomWatch{c: c, w: first, stall: time.NewTimer(watchStall), late: time.NewTimer(time.Hour)}
	rw.late.Stop()
	defer rw.close()
	for {
		var updates <-chan jetstream.KeyValueEntry
		if rw.w != nil {
			updates = rw.w.Updates()
		}
		var i input
		select {
		case e, ok := <-updates:
			if !ok {
				// The watch ended under the session: replace it now.
				rw.w = nil
				rw.arm(0)
				continue
			}
			if i, ok = rw.entry(e); !ok {
				continue
			}
		case <-rw.stall.C:
			c.s.Log.Info("room watch stalled before its initial values were done; taking the state read so far", "after", watchStall)
			var ok bool
			if i, ok = rw.done(); !ok {
				continue
			}
		case <-c.behind:
			if c.seen.Load() < c.written.Load() && !rw.lateArmed {
				rw.arm(watchGrace)
			}
			continue
		case <-rw.late.C:
			rw.lateArmed = false
			if rw.w != nil && c.seen.Load() >= rw.target {
				rw.caughtUp()
				continue
			}
			if !rw.replace() {
				return
			}
			continue
		case <-c.ctx.Done():
			return
		}
		if !c.feed(i) {
			return
		}
	}
}

// entry is the loop's input for one of the watcher's updates (nil: initial values done);
// false when there is none.
func (rw *roomWatch) entry(e jetstream.KeyValueEntry) (input, bool) {
	if e == nil {
		return rw.done()
	}
	c := rw.c
	if rev := e.Revision(); rev > c.seen.Load() {
		c.seen.Store(rev) // only this goroutine stores it
	}
	if !rw.initDone {
		rw.stall.Reset(watchStall)
	}
	if rw.lateArmed && c.seen.Load() >= rw.target {
		rw.late.Stop()
		rw.lateArmed = false
		rw.caughtUp()
	}
	return input{kv: e}, true
}

// done is the input that ends the current watcher's initial values, once.
func (rw *roomWatch) done() (input, bool) {
	if rw.initDone {
		return input{}, false
	}
	rw.initDone = true
	rw.stall.Stop()
	if rw.replaced {
		return input{resynced: true}, true
	}
	return input{ready: true}, true
}

// arm starts the grace of the room's newest write (or the wait before a replacement).
func (rw *roomWatch) arm(d time.Duration) {
	rw.late.Reset(d)
	rw.lateArmed = true
	rw.target = rw.c.written.Load()
}

// caughtUp: the watch delivered the write it was waited for; the writes since get a grace
// of their own.
func (rw *roomWatch) caughtUp() {
	rw.tries = 0
	if rw.c.seen.Load() < rw.c.written.Load() {
		rw.arm(watchGrace)
	}
}

// replace stops the current watcher and starts a new one, whose initial values resync the
// core; a creation that fails is tried again later. False once the session has ended.
func (rw *roomWatch) replace() bool {
	c := rw.c
	if rw.w != nil {
		old := rw.w
		rw.w = nil
		rw.retired.Go(func() { stopWatcher(old) })
	}
	rw.tries++
	c.s.Log.Warn("room watch behind the node's watch of room records, or ended: replacing it",
		"seen_seq", c.seen.Load(), "room_seq", c.written.Load(), "try", rw.tries)
	w, err := c.h.cfg.Rooms.Watch(c.ctx, c.s.Room+".>")
	if err != nil {
		if c.ctx.Err() != nil {
			return false
		}
		c.s.Log.Warn("room watch not replaced, trying again", "err", err)
		rw.arm(rw.retry())
		return true
	}
	rw.w, rw.initDone, rw.replaced = w, false, true
	rw.stall.Reset(watchStall)
	// A new watch that stays behind too is replaced in turn, less and less often.
	rw.arm(rw.retry())
	return c.feed(input{resync: true})
}

// retry is the wait before the next check of a replaced watch: watchGrace, doubled with each
// further replacement that did not catch up, up to watchRetryMax.
func (rw *roomWatch) retry() time.Duration {
	d := watchGrace
	for range min(rw.tries-1, 4) {
		d *= 2
	}
	return min(d, watchRetryMax)
}

// stopWatcher stops w and takes what it buffered (so nats.go's delivery to it never blocks
// on a full channel).
func stopWatcher(w jetstream.KeyWatcher) {
	_ = w.Stop()
	updates := w.Updates()
	for range cap(updates) {
		select {
		case _, ok := <-updates:
			if !ok {
				return
			}
		default:
			return
		}
	}
}

func (rw *roomWatch) close() {
	rw.stall.Stop()
	rw.late.Stop()
	if rw.w != nil {
		stopWatcher(rw.w)
		rw.w = nil
	}
	rw.retired.Wait()
}
