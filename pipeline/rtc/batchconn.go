package rtc

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jetmedia/jetmedia/pipeline/stagetime"
)

// batchSlots is how many packets one batch holds; batchSlot the largest packet a slot takes
// (bigger ones are written at once, unbatched: pion keeps DTLS records and SRTP packets under
// 1,200 bytes by default).
const (
	batchSlots = 128
	batchSlot  = 1500
)

// batchConn is the edge's UDP socket with corkable writes. A packet fanned out to a hundred
// viewers is a hundred writes in a row on this one shared socket, and a system call for each
// was half of the server's CPU. Between Cork and Uncork writes are only copied into a batch;
// Uncork wakes a sender goroutine, which takes everything queued by then and sends it with
// as few system calls as the platform allows (sendmmsg, 64-bit Linux). The fan-out goes on
// with its next packet meanwhile. Uncorked, a write goes out at once as before, so RTCP,
// STUN and DTLS from pion's own goroutines are not delayed unless packets are queued at that
// moment, and then only until they are sent.
//
// The sender takes the whole queue at once: in a burst, while it sends, the fan-outs queue
// the next packets for every viewer, so its next take holds several packets to each. Where
// the kernel has UDP GSO, a destination's packets among them (a video frame's packets to
// one viewer) leave as one message of segments, which costs the kernel about a third as much
// per packet; the destinations' packets otherwise keep the order they were written.
//
// The sends are split over shards by destination, each with its own batches and sender
// goroutine, so that the kernel's share of a burst (most of the CPU per packet: on loopback
// it includes the receiver's side too) runs on several cores at once. A destination's
// packets always take the same shard: they leave in the order they were written (fan-out
// lanes write one viewer's packets from one goroutine), whatever the other shards do.
//
// A corked write is reported done once queued; a packet the kernel then refuses is counted
// (Stats), not reported, as for any datagram lost on the way. Reads pass through; on a
// socket bound to every interface they note which local address each peer sent to, and
// writes to that peer leave from it (sources).
type batchConn struct {
	conn   *net.UDPConn
	out    writer
	shards []*shard

	// src is nil on a socket bound to one address (its replies leave from it).
	src *sources
	// timings, when set, get the RTP datagrams' arrivals and the senders' queue and send
	// times.
	timings *stagetime.Timings
	// rmu holds oob, the reads' control messages, for the one reader at a time.
	rmu sync.Mutex
	oob [128]byte

	// tap, when set (by tests), sees every datagram read, before anything else does.
	tap atomic.Pointer[func(b []byte, from netip.AddrPort)]
	// routes are the peers whose RTP a FastIngest takes as it is read; fmu and fbuf are
	// the fast path's (ingest).
	routes fastRoutes
	fmu    sync.Mutex
	fbuf   [batchSlot]byte

	// Counters, read by Stats.
	packets, batches, sendErrors, direct, coalesced atomic.Uint64
}

// shard is one sender goroutine and the batches it sends.
type shard struct {
	c *batchConn

	mu     sync.Mutex
	corks  int      // fan-outs corked now
	fill   *batch   // packets queued last, being added to
	queue  []*batch // full batches queued before fill, oldest first
	free   []*batch // empty, to be filled
	room   *sync.Cond
	closed bool // no more writes; the sender sends what is queued and ends

	// stopped is set by the sender as it ends (under mu): a batch filled afterwards, which
	// only a write racing Close can make, is sent by its writer.
	stopped bool
	kick    chan struct{} // cap 1: something was queued
	done    chan struct{} // closed by Close
	sender  sync.WaitGroup

	// sending is set (under mu) while a send is in progress, by the sender goroutine or by a
	// flush on a writer's goroutine: one at a time, so that a destination's packets keep
	// their order. taken and plan are that send's.
	sending bool
	taken   []*batch // what the send in progress is sending
	plan    sendPlan // the send's (or, once the sender has stopped, a writer's under mu)
}

// batch is up to batchSlots packets and their destinations.
type batch struct {
	n int
	// queued is when its first packet was queued (Unix nanoseconds; set only with timings).
	queued int64
	buf    [batchSlots * batchSlot]byte
	size   [batchSlots]int
	to     [batchSlots]netip.AddrPort
}

func (b *batch) packet(i int) []byte { return b.buf[i*batchSlot : i*batchSlot+b.size[i]] }

// writer is where the socket's packets leave: one at a time (write) or batches' (send, each
// destination's packets in order, planned in the caller's own p). Both may be called from
// several goroutines at once.
type writer interface {
	write(b []byte, addr netip.AddrPort) (int, error)
	send(bs []*batch, p *sendPlan) sendResult
	gsoOn() bool
	close() error
}

// sendResult is what became of a send's packets: failed were refused by the kernel,
// coalesced left as segments of a message with others.
type sendResult struct{ failed, coalesced int }

// newBatchConn takes over conn's writes, sent by senders goroutines (at least one), with UDP
// GSO if gso is set and the kernel has it; Close closes conn. Reads stay on conn. Where the
// platform's faster writer (or GSO, when asked for) cannot be had, fallback says why, and
// writes go through conn one by one or without GSO.
//
// On a socket bound to every interface the writes leave from the address each peer sent
// to, where the platform can say which that was (Linux); elsewhere fallback says so.
// timings, if not nil, get the arrival of every RTP datagram read and the queue and send
// times of the senders' sends.
func newBatchConn(conn *net.UDPConn, senders int, gso bool, timings *stagetime.Timings) (c *batchConn, fallback error) {
	var src *sources
	if ua, ok := conn.LocalAddr().(*net.UDPAddr); ok && ua.IP.IsUnspecified() {
		if inet6, err := receiveDestinations(conn); err != nil {
			fallback = err
		} else {
			src = newSources(inet6, time.Now())
		}
	}
	out, noGSO, err := newWriter(conn, gso, src)
	if err != nil {
		fallback = errors.Join(fallback, err)
		out = plainWriter{conn: conn, src: src}
	} else if noGSO != nil {
		fallback = errors.Join(fallback, noGSO)
	}
	c = &batchConn{conn: conn, out: out, src: src, timings: timings, shards: make([]*shard, max(senders, 1))}
	for i := range c.shards {
		s := &shard{c: c, fill: new(batch), kick: make(chan struct{}, 1), done: make(chan struct{})}
		for range batchesQueued {
			s.free = append(s.free, new(batch))
		}
		s.room = sync.NewCond(&s.mu)
		s.sender.Go(s.sendLoop)
		c.shards[i] = s
	}
	return c, fallback
}

// batchesQueued is how many full batches may wait for a sender besides the one being
// filled (some 400 packets, a keyframe's to 30 viewers): a fan-out that gets that far ahead
// of the kernel waits for the sender to take them.
const batchesQueued = 3

// shardFor is the shard of a destination, by its hash spread over the shards.
func (c *batchConn) shardFor(addr netip.AddrPort) *shard {
	if len(c.shards) == 1 {
		return c.shards[0]
	}
	return c.shards[uint64(addrHash(addr))*uint64(len(c.shards))>>32]
}

// addrHash is a multiplicative hash of a destination's address's last four bytes and its
// port, its high bits the best mixed.
func addrHash(addr netip.AddrPort) uint32 {
	a := addr.Addr().As16()
	h := (uint32(a[12])<<24 | uint32(a[13])<<16 | uint32(a[14])<<8 | uint32(a[15])) ^ uint32(addr.Port())<<7
	return h * 0x9e3779b1
}

// Cork queues this socket's writes until the matching Uncork. Calls nest and may come from
// several goroutines.
func (c *batchConn) Cork() {
	for _, s := range c.shards {
		s.mu.Lock()
		s.corks++
		s.mu.Unlock()
	}
}

// Uncork ends one Cork and has every packet queued so far sent (other fan-outs' too: a
// packet never waits longer than the fan-out it was queued behind): see flush.
func (c *batchConn) Uncork() {
	for _, s := range c.shards {
		s.mu.Lock()
		s.corks--
		queued := s.fill.n > 0 || len(s.queue) > 0
		s.mu.Unlock()
		if queued {
			s.flush()
		}
	}
}

// inlineMax is the most packets a flush sends on the writer's own goroutine.
const inlineMax = 16

// flush has what is queued sent. A few packets with no send in progress (a node with few
// viewers, or between bursts) are sent at once on the calling goroutine: handing them to
// the sender goroutine would add its wake-up to their way out (tens of microseconds on an
// idle core, a quarter of a millisecond at the median on this project's loaded 2-core VM,
// jetmedia_forward_stage_seconds{stage="queue"}) and there is nothing to coalesce them
// with. More (a packet's copies to a lane of viewers) go to the sender goroutine, which sends
// them on another core while the fan-out writes the next packet, and takes whatever queued
// meanwhile in its next round: that overlap is what gathers a viewer's packets into GSO
// messages (sent inline one packet at a time, a frame to 100 viewers cost 20 % more CPU a
// packet in BenchmarkEdgeWrite and coalesced nothing). A send in progress takes what is
// queued when it ends.
func (s *shard) flush() {
	s.mu.Lock()
	if s.stopped { // the sender has ended (Close is racing this write)
		if s.fill.n > 0 {
			s.c.send([]*batch{s.fill}, &s.plan)
		}
		s.mu.Unlock()
		return
	}
	if s.sending {
		s.mu.Unlock()
		return
	}
	if len(s.queue) > 0 || s.fill.n > inlineMax {
		s.mu.Unlock()
		s.signal()
		return
	}
	if !s.takeLocked() {
		s.mu.Unlock()
		return
	}
	s.mu.Unlock()
	s.sendTaken()
	if s.release() {
		s.signal()
	}
}

// takeLocked takes every queued batch and the one being filled for a send, marking it in
// progress; false when there is nothing to send (mu held).
func (s *shard) takeLocked() bool {
	s.taken = append(s.taken[:0], s.queue...)
	clear(s.queue)
	s.queue = s.queue[:0]
	if s.fill.n > 0 && len(s.free) > 0 { // (none free: the queue had them all; next round)
		s.taken = append(s.taken, s.fill)
		s.fill = s.free[len(s.free)-1]
		s.free = s.free[:len(s.free)-1]
	}
	if len(s.taken) == 0 {
		return false
	}
	s.sending = true
	return true
}

// sendTaken sends the batches taken (without mu; the send in progress is this one).
func (s *shard) sendTaken() {
	if t := s.c.timings; t != nil {
		start := time.Now()
		t.Observe(stagetime.Queue, start.Sub(time.Unix(0, s.taken[0].queued)))
		s.c.send(s.taken, &s.plan)
		t.Since(stagetime.Send, start)
		return
	}
	s.c.send(s.taken, &s.plan)
}

// release returns the batches sent to the free ones and ends the send, waking writers
// waiting for room; it reports whether more is queued.
func (s *shard) release() (more bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.free = append(s.free, s.taken...)
	clear(s.taken)
	s.taken = s.taken[:0]
	s.sending = false
	s.room.Broadcast()
	return s.fill.n > 0 || len(s.queue) > 0
}

// signal wakes the sender unless a wake-up is already pending (it takes everything when it
// comes).
func (s *shard) signal() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// rotate queues the full fill batch and takes an empty one, waiting while none is free;
// false once the sender has ended (mu held throughout, but for the wait).
func (s *shard) rotate() bool {
	for len(s.free) == 0 && !s.stopped {
		s.room.Wait()
	}
	if s.stopped {
		return false
	}
	s.queue = append(s.queue, s.fill)
	s.fill = s.free[len(s.free)-1]
	s.free = s.free[:len(s.free)-1]
	return true
}

// sendLoop is the sender goroutine: it takes everything queued and sends it, again and
// again while there is more, and sleeps until woken when there is none; after Close it sends
// what is left and ends. While a flush sends, it leaves the shard to it (the flush wakes it
// if more is queued when it ends).
func (s *shard) sendLoop() {
	closing, idle := false, true
	for {
		if idle && !closing {
			select {
			case <-s.kick:
			case <-s.done:
				closing = true
			}
		}
		s.mu.Lock()
		for closing && s.sending { // a flush's send: wait for its end, then take the rest
			s.room.Wait()
		}
		if s.sending {
			s.mu.Unlock()
			idle = true
			continue
		}
		if !s.takeLocked() {
			if closing {
				s.stopped = true
				s.room.Broadcast()
				s.mu.Unlock()
				return
			}
			s.mu.Unlock()
			idle = true
			continue
		}
		s.mu.Unlock()
		s.sendTaken()
		s.release()
		idle = false
	}
}

// send sends the batches' packets, counts them, and empties the batches.
func (c *batchConn) send(bs []*batch, p *sendPlan) {
	n := 0
	for _, b := range bs {
		n += b.n
	}
	r := c.out.send(bs, p)
	c.packets.Add(uint64(n - r.failed))
	c.sendErrors.Add(uint64(r.failed))
	c.coalesced.Add(uint64(r.coalesced))
	c.batches.Add(uint64(len(bs)))
	for _, b := range bs {
		b.n = 0
	}
}

// WriteToAddrPort sends b to addr, or queues it while the socket is corked or packets are
// queued to be sent (so that it does not overtake them).
func (c *batchConn) WriteToAddrPort(b []byte, addr netip.AddrPort) (int, error) {
	if len(b) > batchSlot {
		c.direct.Add(1)
		return c.out.write(b, addr)
	}
	s := c.shardFor(addr)
	s.mu.Lock()
	for {
		if s.closed {
			s.mu.Unlock()
			return 0, net.ErrClosed
		}
		if s.corks == 0 && s.fill.n == 0 && len(s.queue) == 0 {
			s.mu.Unlock()
			c.direct.Add(1)
			return c.out.write(b, addr)
		}
		if f := s.fill; f.n < batchSlots {
			i := f.n
			if i == 0 && c.timings != nil {
				f.queued = time.Now().UnixNano()
			}
			f.size[i] = copy(f.buf[i*batchSlot:(i+1)*batchSlot], b)
			f.to[i] = addr
			f.n++
			corked := s.corks > 0
			s.mu.Unlock()
			if !corked { // queued behind others while uncorked: nobody else will send it
				s.flush()
			}
			return len(b), nil
		}
		if s.rotate() { // full: queued for the sender
			s.signal()
		} else { // the sender has ended (Close is racing this write)
			s.c.send([]*batch{s.fill}, &s.plan)
		}
	}
}

// WriteTo sends b to addr, a *net.UDPAddr.
func (c *batchConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	ua, ok := addr.(*net.UDPAddr)
	if !ok {
		return 0, fmt.Errorf("rtc: write to %T: want *net.UDPAddr", addr)
	}
	return c.WriteToAddrPort(b, ua.AddrPort())
}

// ReadFromAddrPort reads from the socket, noting the local address the datagram came to
// when the socket is bound to every interface.
// A publisher's RTP that a FastIngest takes is not returned: the read goes on to the next
// datagram.
func (c *batchConn) ReadFromAddrPort(b []byte) (int, netip.AddrPort, error) {
	for {
		n, from, err := c.readOne(b)
		if err != nil {
			return n, from, err
		}
		if tap := c.tap.Load(); tap != nil {
			(*tap)(b[:n], from)
		}
		if !c.ingest(b[:n], from) {
			return n, from, nil
		}
	}
}

// readOne reads one datagram.
func (c *batchConn) readOne(b []byte) (int, netip.AddrPort, error) {
	if c.src == nil {
		n, from, err := c.conn.ReadFromUDPAddrPort(b)
		if err == nil && c.timings != nil {
			c.timings.Arrived(b[:n], time.Now())
		}
		return n, from, err
	}
	c.rmu.Lock()
	defer c.rmu.Unlock()
	n, oobn, _, from, err := c.conn.ReadMsgUDPAddrPort(b, c.oob[:])
	if err == nil {
		now := time.Now()
		if local, ok := destinationOf(c.oob[:oobn]); ok {
			c.src.heard(from, local, now)
		}
		if c.timings != nil {
			c.timings.Arrived(b[:n], now)
		}
	}
	return n, from, err
}

// ReadFrom reads from the socket.
func (c *batchConn) ReadFrom(b []byte) (int, net.Addr, error) {
	n, from, err := c.ReadFromAddrPort(b)
	if err != nil {
		return n, nil, err
	}
	return n, net.UDPAddrFromAddrPort(from), nil
}

// LocalAddr is the socket's address.
func (c *batchConn) LocalAddr() net.Addr { return c.conn.LocalAddr() }

// SetDeadline, SetReadDeadline and SetWriteDeadline apply to the socket.
func (c *batchConn) SetDeadline(t time.Time) error      { return c.conn.SetDeadline(t) }
func (c *batchConn) SetReadDeadline(t time.Time) error  { return c.conn.SetReadDeadline(t) }
func (c *batchConn) SetWriteDeadline(t time.Time) error { return c.conn.SetWriteDeadline(t) }

// Close sends what is queued, stops the senders and closes the socket; later writes fail
// with net.ErrClosed.
func (c *batchConn) Close() error {
	for _, s := range c.shards {
		s.mu.Lock()
		already := s.closed
		s.closed = true
		s.mu.Unlock()
		if !already {
			close(s.done)
		}
	}
	for _, s := range c.shards {
		s.sender.Wait()
	}
	werr := c.out.close()
	if err := c.conn.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
		return errors.Join(werr, err)
	}
	return werr
}

// BatchStats are the edge socket's write counters.
type BatchStats struct {
	// Packets were sent queued, in Batches of up to 128 (a sender takes every batch queued
	// for it at once and sends them in as few system calls as the platform allows);
	// SendErrors of them were refused by the kernel. Coalesced of the Packets left as
	// segments of a message with others to the same destination (UDP GSO). Direct were
	// written at once (uncorked with nothing queued, or too large for a slot).
	Packets, Batches, SendErrors, Coalesced, Direct uint64
	// GSO is whether sends coalesce now: asked for, offered by the kernel and not refused.
	GSO bool
}

// Stats returns the counters.
func (c *batchConn) Stats() BatchStats {
	return BatchStats{Packets: c.packets.Load(), Batches: c.batches.Load(),
		SendErrors: c.sendErrors.Load(), Coalesced: c.coalesced.Load(), Direct: c.direct.Load(),
		GSO: c.out.gsoOn()}
}
