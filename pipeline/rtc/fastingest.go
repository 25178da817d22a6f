package rtc

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/pion/interceptor"
	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"
	"github.com/pion/webrtc/v4"
)

// FastIngest moves one publisher session's RTP from the edge's socket to its tracks'
// senders on the goroutine that read the datagram. Through pion, a packet read from the
// socket changes goroutine four times before ReadRTP has it (ICE mux reader, ICE conn,
// DTLS/SRTP demux, SRTP session, track read): under load that was 0.5-1 ms of the ingest
// stage (docs/benchmarks.md, issue 17). Here the socket reader decrypts the packet with the
// session's own SRTP keys (SRTPKeys) into its stream's queue, and the stream's own goroutine
// runs it through the session's receive interceptors (NACK generation, receiver reports,
// whatever the edge registers: the same instances pion's path uses, so their state is one)
// and sends it on: one hand-off. Sending on the reader itself held the socket's next
// datagrams (a video frame's other packets, every peer's RTCP) for the fan-out of each
// packet, which cost more than the hand-offs saved (docs/benchmarks.md).
//
// Pion still does everything else: ICE, DTLS, all RTCP both ways, RTX, the first packets of
// a stream (until Publish names its sender) and any packet the fast path cannot open before
// it has opened one (keys not known yet, or not the keys pion has). Once a packet has been
// opened, one that fails (bad tag, replay, malformed) is dropped and counted: pion's context
// has not seen the fast path's packets, and would take a replay of one.
type FastIngest struct {
	conn *batchConn
	keys *SRTPKeys // shared with the session's FastEgress, when it has one

	// Owned by the socket's reader (under conn.fmu).
	ctx    *srtp.Context
	opened bool
	hdr    rtp.Header

	// streams are the session's remote streams by SSRC, replaced whole (under mu) when one
	// changes: the reader loads them without a lock.
	streams atomic.Pointer[map[uint32]*fastStream]
	mu      sync.Mutex
	route   netip.AddrPort // the peer's address the edge routes to f (under mu)
	closed  bool
	queues  []*fastQueue // every stream's, to stop (under mu)
	senders sync.WaitGroup

	// counts are the edge's, which every FastIngest of it adds to.
	counts *fastCounts
}

// fastCounts are the counters of an edge's FastIngests.
type fastCounts struct{ packets, refused, full atomic.Uint64 }

func (c *fastCounts) stats() FastIngestStats {
	return FastIngestStats{Packets: c.packets.Load(), Refused: c.refused.Load(), Full: c.full.Load()}
}

// fastStream is one remote stream: the receive interceptors' reader that pion bound for it,
// and once Publish named them, where its packets go and the queue to its sender goroutine.
type fastStream struct {
	chain  interceptor.RTPReader
	dst    RTPSender
	paused *atomic.Bool
	n      *RTPCounters
	q      *fastQueue
}

// fastSlots is how many packets a stream's sender may lag behind the socket's reader: a
// keyframe's burst fits; beyond it packets are dropped (counted as Full).
const fastSlots = 128

// fastQueue is a single-producer (the socket's reader, under conn.fmu), single-consumer (the
// stream's sender goroutine) ring of decrypted packets.
type fastQueue struct {
	ssrc       uint32
	head, tail atomic.Uint64
	n          [fastSlots]int
	buf        [fastSlots][batchSlot]byte
	wake       chan struct{} // cap 1: something was queued
	stop       chan struct{}
	// attrs and size are the sender's: the attributes passed down the chain, which tell
	// the innermost reader (fastTap) to hand back the packet of size bytes already in the
	// buffer instead of reading pion's SRTP stream.
	attrs interceptor.Attributes
	size  int
}

// FastIngestStats count what the fast path moved (Packets) and what it dropped (Refused:
// bad tag, replay, malformed, or refused by the interceptors; Full: its stream's sender
// was fastSlots packets behind).
type FastIngestStats struct{ Packets, Refused, Full uint64 }

// FastIngestStats returns the counters of every FastIngest of the edge.
func (e *Edge) FastIngestStats() FastIngestStats { return e.fastCounts.stats() }

// NewPublisher is a PeerConnection for a session that publishes (WHIP) or publishes and
// views (room SDK): with Config.FastIngest, one of its own API whose RTP the edge's socket
// reader takes (FastIngest); with Config.FastEgress, what it is sent is protected and queued
// by the edge itself (FastEgress); with neither, one of API's and a nil FastIngest (whose
// methods do nothing).
func (e *Edge) NewPublisher() (*webrtc.PeerConnection, *FastIngest, error) {
	if !e.fastIngest && !e.fastEgressOn {
		pc, err := e.API.NewPeerConnection(webrtc.Configuration{})
		if err != nil {
			return nil, nil, fmt.Errorf("rtc: new peer connection: %w", err)
		}
		return pc, nil, nil
	}
	keys := &SRTPKeys{}
	var f *FastIngest
	var g *FastEgress
	var before, after []interceptor.Factory
	if e.fastIngest {
		f = &FastIngest{conn: e.conn, keys: keys, counts: &e.fastCounts}
		before = append(before, tapFactory{f: f})
		after = append(after, tapFactory{f: f, outer: true})
	}
	if e.fastEgressOn {
		g = &FastEgress{conn: e.conn, keys: keys, counts: &e.fastEgress}
		before = append(before, egressFactory{f: g})
	}
	api, err := e.keyedAPI(keys, before, after)
	if err != nil {
		return nil, nil, err
	}
	pc, err := api.NewPeerConnection(keyedConfiguration)
	if err != nil {
		return nil, nil, fmt.Errorf("rtc: new peer connection: %w", err)
	}
	// The peer's media comes from, and goes to, the selected pair's remote address, which ICE
	// may change after the first selection (Chromium nominates a better pair once it has one).
	pc.SCTP().Transport().ICETransport().OnSelectedCandidatePairChange(func(p *webrtc.ICECandidatePair) {
		addr, err := pairAddr(p)
		if err != nil {
			return
		}
		if f != nil {
			f.mu.Lock()
			f.routeLocked(addr)
			f.mu.Unlock()
		}
		g.routeTo(addr)
	})
	return pc, f, nil
}

// Publish sends the RTP of the remote stream ssrc to dst from now on, as ReadRTP would
// (paused and n as there; either may be nil), and routes the peer's datagrams (from the
// address of pc's selected ICE pair) to f. Packets pion has read already still reach
// ReadRTP, which should keep running (it also gets what the fast path leaves to pion) with
// the sender Publish returns: dst, behind a lock the fast path's sends take too, since an
// RTPSender is written by one goroutine at a time. With an error, or a nil f, it is dst.
func (f *FastIngest) Publish(pc *webrtc.PeerConnection, ssrc webrtc.SSRC, dst RTPSender, paused *atomic.Bool, n *RTPCounters) (RTPSender, error) {
	if f == nil {
		return dst, nil
	}
	addr, err := peerAddr(pc)
	if err != nil {
		return dst, err
	}
	one := &oneAtATime{dst: dst}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return dst, ErrSessionClosed
	}
	f.publishLocked(uint32(ssrc), one, paused, n)
	f.routeLocked(addr)
	return one, nil
}

// oneAtATime serialises the sends of a stream's two paths, pion's (ReadRTP) and the fast
// one, while both have packets (pion's until what it had read before Publish is read).
type oneAtATime struct {
	mu  sync.Mutex
	dst RTPSender
}

func (o *oneAtATime) Send(pkt []byte) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.dst.Send(pkt)
}

// routeLocked routes the peer's datagrams from addr, and no longer from the address before
// (under mu).
func (f *FastIngest) routeLocked(addr netip.AddrPort) {
	if f.closed || addr == f.route {
		return
	}
	if f.route.IsValid() {
		f.conn.unroute(f.route, f)
	}
	f.route = addr
	f.conn.routeTo(addr, f)
}

// publishLocked names stream ssrc's sender and starts its goroutine (under mu).
func (f *FastIngest) publishLocked(ssrc uint32, dst RTPSender, paused *atomic.Bool, n *RTPCounters) {
	if n == nil {
		n = &RTPCounters{}
	}
	f.update(ssrc, func(s *fastStream) {
		s.dst, s.paused, s.n = dst, paused, n
		if s.q == nil {
			s.q = &fastQueue{ssrc: ssrc, wake: make(chan struct{}, 1), stop: make(chan struct{}),
				attrs: interceptor.Attributes{}}
			f.queues = append(f.queues, s.q)
			f.senders.Go(func() { f.send(s.q) })
		}
	})
}

// Close stops routing the peer's datagrams to f (pion's path has them again) and stops
// its streams' senders, which it waits for. It is idempotent.
func (f *FastIngest) Close() {
	if f == nil {
		return
	}
	f.mu.Lock()
	if !f.closed {
		f.closed = true
		if f.route.IsValid() {
			f.conn.unroute(f.route, f)
		}
		for _, q := range f.queues {
			close(q.stop)
		}
	}
	f.mu.Unlock()
	f.senders.Wait()
}

// peerAddr is the remote address of pc's selected ICE candidate pair.
func peerAddr(pc *webrtc.PeerConnection) (netip.AddrPort, error) {
	pair, err := pc.SCTP().Transport().ICETransport().GetSelectedCandidatePair()
	if err != nil || pair == nil {
		return netip.AddrPort{}, fmt.Errorf("rtc: fast ingest: no selected candidate pair: %v", err)
	}
	return pairAddr(pair)
}

// pairAddr is the remote address of a candidate pair.
func pairAddr(pair *webrtc.ICECandidatePair) (netip.AddrPort, error) {
	if pair == nil || pair.Remote == nil {
		return netip.AddrPort{}, fmt.Errorf("rtc: fast ingest: no remote candidate")
	}
	a, err := netip.ParseAddr(pair.Remote.Address)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("rtc: fast ingest: peer address %q: %w", pair.Remote.Address, err)
	}
	return netip.AddrPortFrom(a.Unmap(), pair.Remote.Port), nil
}

// update replaces stream ssrc with a copy that change made (under mu).
func (f *FastIngest) update(ssrc uint32, change func(*fastStream)) {
	old := f.streams.Load()
	m := make(map[uint32]*fastStream, 4)
	if old != nil {
		for k, v := range *old {
			m[k] = v
		}
	}
	s := &fastStream{}
	if o := m[ssrc]; o != nil {
		*s = *o
	}
	change(s)
	if s.chain == nil && s.dst == nil && s.q == nil {
		delete(m, ssrc)
	} else {
		m[ssrc] = s
	}
	f.streams.Store(&m)
}

// bound and unbound follow pion's binding of the interceptors to a remote stream.
func (f *FastIngest) bound(ssrc uint32, chain interceptor.RTPReader) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.update(ssrc, func(s *fastStream) { s.chain = chain })
}

func (f *FastIngest) unbound(ssrc uint32) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.update(ssrc, func(s *fastStream) { s.chain, s.dst = nil, nil })
}

// ingest takes one SRTP datagram of f's peer, decrypting it into buf: false leaves it to
// pion (unchanged). Called by the socket's reader under conn.fmu.
func (f *FastIngest) ingest(b, buf []byte) bool {
	if len(b) < 12 {
		return false
	}
	m := f.streams.Load()
	if m == nil {
		return false
	}
	s := (*m)[binary.BigEndian.Uint32(b[8:12])]
	if s == nil || s.chain == nil || s.dst == nil || len(b) > batchSlot {
		return false
	}
	if f.ctx == nil && !f.context() {
		return false
	}
	q := s.q
	tail := q.tail.Load()
	full := tail-q.head.Load() >= fastSlots
	into := q.buf[tail%fastSlots][:]
	if full {
		into = buf // opened all the same: the replay window and rollover count must see it
	}
	out, err := f.ctx.DecryptRTP(into, b, &f.hdr)
	switch {
	case err != nil && !f.opened:
		return false
	case err != nil:
		f.counts.refused.Add(1)
		return true
	}
	f.opened = true
	if full {
		f.counts.full.Add(1)
		return true
	}
	slot := tail % fastSlots
	q.n[slot] = len(out)
	q.tail.Store(tail + 1)
	select {
	case q.wake <- struct{}{}:
	default:
	}
	return true
}

// send is the sender goroutine of q's stream: it takes the packets the reader queued
// through the stream's interceptors to its RTPSender, as ReadRTP does, until Close.
func (f *FastIngest) send(q *fastQueue) {
	for {
		select {
		case <-q.wake:
		case <-q.stop:
			return
		}
		for h := q.head.Load(); h != q.tail.Load(); h++ {
			f.forward(q, q.buf[h%fastSlots][:q.n[h%fastSlots]])
			q.head.Store(h + 1)
		}
	}
}

// forward takes one decrypted packet of q's stream through its interceptors and sends it on.
func (f *FastIngest) forward(q *fastQueue, pkt []byte) {
	m := f.streams.Load()
	if m == nil {
		return
	}
	s := (*m)[q.ssrc]
	if s == nil || s.chain == nil || s.dst == nil {
		return // unbound since it was queued
	}
	clear(q.attrs)
	q.attrs[fastKey{}] = q
	q.size = len(pkt)
	k, _, err := s.chain.Read(pkt, q.attrs)
	if err != nil {
		f.counts.refused.Add(1)
		return
	}
	f.counts.packets.Add(1)
	if s.paused != nil && s.paused.Load() {
		return
	}
	s.n.Packets.Add(1)
	s.n.Bytes.Add(uint64(k))
	if err := s.dst.Send(pkt[:k]); err != nil {
		s.n.Dropped.Add(1)
	}
}

// context makes the decrypting context once the handshake has given the keys.
func (f *FastIngest) context() bool {
	k, err := f.keys.Keying()
	if err != nil {
		return false
	}
	if f.ctx, err = k.PeerContext(); err != nil {
		return false
	}
	return true
}

// fastKey marks, in the attributes passed down a stream's interceptors, a packet the fast
// path has decrypted already.
type fastKey struct{}

// tapFactory builds fastTaps: the inner one around pion's SRTP read stream, the outer one
// around the whole chain.
type tapFactory struct {
	f     *FastIngest
	outer bool
}

func (t tapFactory) NewInterceptor(string) (interceptor.Interceptor, error) {
	return &fastTap{f: t.f, outer: t.outer}, nil
}

// fastTap lets the fast path run a packet through a remote stream's interceptors: the
// outer tap hands the chain pion bound to the FastIngest; the inner one, called at the
// bottom of the chain, returns the fast path's packet (already in the buffer) when the
// attributes say so, else reads pion's SRTP stream as usual.
type fastTap struct {
	interceptor.NoOp
	f     *FastIngest
	outer bool
}

func (t *fastTap) BindRemoteStream(info *interceptor.StreamInfo, r interceptor.RTPReader) interceptor.RTPReader {
	if t.outer {
		t.f.bound(info.SSRC, r)
		return r
	}
	return interceptor.RTPReaderFunc(func(b []byte, a interceptor.Attributes) (int, interceptor.Attributes, error) {
		if q, ok := a[fastKey{}].(*fastQueue); ok {
			return q.size, a, nil
		}
		return r.Read(b, a)
	})
}

func (t *fastTap) UnbindRemoteStream(info *interceptor.StreamInfo) {
	if t.outer {
		t.f.unbound(info.SSRC)
	}
}

// fastRoutes are the peers whose datagrams the edge's socket reader gives to a FastIngest,
// by address; the reader loads the map without a lock, changes replace it under mu.
type fastRoutes struct {
	mu sync.Mutex
	m  atomic.Pointer[map[netip.AddrPort]*FastIngest]
}

func (c *batchConn) routeTo(addr netip.AddrPort, f *FastIngest) {
	c.routes.change(func(m map[netip.AddrPort]*FastIngest) { m[addr] = f })
}

func (c *batchConn) unroute(addr netip.AddrPort, f *FastIngest) {
	c.routes.change(func(m map[netip.AddrPort]*FastIngest) {
		if m[addr] == f {
			delete(m, addr)
		}
	})
}

func (r *fastRoutes) change(do func(map[netip.AddrPort]*FastIngest)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := map[netip.AddrPort]*FastIngest{}
	if old := r.m.Load(); old != nil {
		for k, v := range *old {
			m[k] = v
		}
	}
	do(m)
	if len(m) == 0 {
		r.m.Store(nil)
		return
	}
	r.m.Store(&m)
}

// ingest gives an RTP datagram from a routed peer to its FastIngest: true when taken.
func (c *batchConn) ingest(b []byte, from netip.AddrPort) bool {
	m := c.routes.m.Load()
	if m == nil || len(b) < 12 {
		return false
	}
	// RTP by RFC 7983 (first byte 128-191), not RTCP (packet types 192-223 in the second).
	if b0, b1 := b[0], b[1]; b0 < 128 || b0 > 191 || (b1 >= 192 && b1 <= 223) {
		return false
	}
	f := (*m)[netip.AddrPortFrom(from.Addr().Unmap(), from.Port())]
	if f == nil {
		return false
	}
	// fmu makes the fast path one reader at a time (the ICE mux has one reading goroutine);
	// nothing else takes it.
	c.fmu.Lock()
	defer c.fmu.Unlock()
	return f.ingest(b, c.fbuf[:])
}
