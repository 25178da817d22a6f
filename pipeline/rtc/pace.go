package rtc

import (
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtp"

	"github.com/jetmedia/jetmedia/pipeline/pacer"
)

// PacingConfig configures the pacing of what the edge sends each viewer connection
// (pipeline/pacer): at Factor times the connection's bandwidth estimate, bursts past it
// queued and drained by one goroutine per edge. It needs the node's own estimator (BWE on,
// EstimatorJetmedia).
type PacingConfig struct {
	// Off sends every packet as the fan-out writes it.
	Off bool
	// Pacer bounds each connection's pacer (pacer.Config's defaults: 2.5 times the
	// estimate, a 40 ms burst, at most 500 ms, 1024 packets or 1 MiB queued).
	Pacer pacer.Config
	// Tick is how often the queues are drained (0: 5 ms).
	Tick time.Duration
}

// PacingStats are the counters of the edge's pacing, summed over its connections.
type PacingStats struct {
	// Queued counts packets that waited for their connection's budget, QueuedBytes their
	// bytes; Dropped and DroppedBytes those dropped past the queue's bounds (never audio).
	Queued, QueuedBytes, Dropped, DroppedBytes uint64
	// Delay counts the queued packets that left by how long they waited: DelayBuckets[i]
	// those within PacingDelayBounds[i] (the last: longer), DelaySum their total.
	DelayBuckets [len(PacingDelayBounds) + 1]uint64
	DelaySum     time.Duration
}

// PacingDelayBounds are the upper bounds of PacingStats.DelayBuckets.
var PacingDelayBounds = [...]time.Duration{time.Millisecond, 2 * time.Millisecond, 5 * time.Millisecond,
	10 * time.Millisecond, 20 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond,
	200 * time.Millisecond, 500 * time.Millisecond}

// pacedMax is the largest packet a queue copies (header and payload); a larger one is sent
// unpaced (forward's lanes never write one: their buffers hold 1500 bytes).
const pacedMax = 1500 + 2

// queuedPacket is a copy of a packet waiting in a connection's queue (the writer's header
// and payload are reused as soon as its write returns), pooled.
type queuedPacket struct {
	hdr  rtp.Header
	csrc [15]uint32
	ext  [4]rtp.Extension
	n    int
	buf  [pacedMax]byte
	w    interceptor.RTPWriter // the stream's next writer
	at   time.Duration         // when it was queued (pacing.now)
}

// copyFrom takes h and payload; false when they do not fit.
func (q *queuedPacket) copyFrom(h *rtp.Header, payload []byte) bool {
	if len(payload) > len(q.buf) || len(h.CSRC) > len(q.csrc) {
		return false
	}
	q.hdr = *h
	q.hdr.CSRC = append(q.csrc[:0], h.CSRC...)
	q.hdr.Extensions = q.ext[:0]
	if len(h.Extensions) > 0 {
		// Rare here (forward's lanes write none; transport-cc is set after the pacer): copy
		// the extension payloads after the packet's payload.
		off := len(payload)
		for _, id := range h.GetExtensionIDs() {
			v := h.GetExtension(id)
			if off+len(v) > len(q.buf) {
				return false
			}
			copy(q.buf[off:], v)
			if err := q.hdr.SetExtension(id, q.buf[off:off+len(v)]); err != nil {
				return false
			}
			off += len(v)
		}
	}
	q.n = copy(q.buf[:], payload)
	return true
}

// pacing is the edge's pacing: a pacedConn per PeerConnection, and the one goroutine that
// drains the connections that have a queue.
type pacing struct {
	cfg    PacingConfig
	origin time.Time
	batch  interface {
		Cork()
		Uncork()
	} // the edge socket: a tick's packets go out together
	pool sync.Pool

	mu     sync.Mutex // guards active; taken before a pacedConn's mu, never after
	active map[*pacedConn]struct{}

	wake chan struct{} // cap 1: a connection got a queue
	stop chan struct{}
	done chan struct{}
	once sync.Once

	queued, queuedBytes, dropped, droppedBytes atomic.Uint64
	delay                                      [len(PacingDelayBounds) + 1]atomic.Uint64
	delaySum                                   atomic.Int64

	// The drain goroutine's own scratch.
	conns []*pacedConn
	out   []*queuedPacket
}

func newPacing(cfg PacingConfig, batch interface {
	Cork()
	Uncork()
}) *pacing {
	if cfg.Tick <= 0 {
		cfg.Tick = 5 * time.Millisecond
	}
	p := &pacing{cfg: cfg, origin: time.Now(), batch: batch, active: map[*pacedConn]struct{}{},
		wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	p.pool.New = func() any { return new(queuedPacket) }
	go p.run()
	return p
}

// close stops the drain goroutine and waits for it; queued packets are dropped.
func (p *pacing) close() {
	p.once.Do(func() { close(p.stop) })
	<-p.done
}

func (p *pacing) now() time.Duration { return time.Since(p.origin) }

// run drains the queued connections every tick while there are any, and sleeps otherwise.
func (p *pacing) run() {
	defer close(p.done)
	t := time.NewTicker(p.cfg.Tick)
	defer t.Stop()
	t.Stop()
	ticking := false
	for {
		select {
		case <-p.stop:
			return
		case <-p.wake:
			// Only a stopped ticker is restarted: resetting a running one at every
			// connection's first queued packet would put the next drain off for as long as
			// new connections keep queueing (many viewers of one key frame).
			if !ticking {
				ticking = true
				t.Reset(p.cfg.Tick)
			}
		case <-t.C:
			if !p.drain() {
				ticking = false
				t.Stop()
			}
		}
	}
}

// drain sends what each queued connection's budget allows; false when no queue is left.
func (p *pacing) drain() bool {
	p.mu.Lock()
	p.conns = p.conns[:0]
	for c := range p.active {
		p.conns = append(p.conns, c)
	}
	p.mu.Unlock()
	now := p.now()
	p.batch.Cork()
	for _, c := range p.conns {
		p.out = c.take(now, p.out[:0])
		for _, q := range p.out {
			// Errors are the stream's (closed, or the viewer gone): the fan-out counts its own.
			_, _ = q.w.Write(&q.hdr, q.buf[:q.n], nil)
			p.release(q)
		}
		clear(p.out)
		c.drained(len(p.out) > 0)
	}
	p.batch.Uncork()
	p.mu.Lock()
	for _, c := range p.conns {
		c.mu.Lock()
		if n, _ := c.core.Len(); n == 0 || c.closed {
			c.listed = false
			delete(p.active, c)
		}
		c.mu.Unlock()
	}
	left := len(p.active) > 0
	p.mu.Unlock()
	clear(p.conns)
	return left
}

// activate puts c on the drain goroutine's list.
func (p *pacing) activate(c *pacedConn) {
	p.mu.Lock()
	p.active[c] = struct{}{}
	p.mu.Unlock()
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

func (p *pacing) release(q *queuedPacket) {
	q.w = nil
	p.pool.Put(q)
}

func (p *pacing) waited(d time.Duration) {
	i := 0
	for i < len(PacingDelayBounds) && d > PacingDelayBounds[i] {
		i++
	}
	p.delay[i].Add(1)
	p.delaySum.Add(int64(d))
}

// stats sums the counters.
func (p *pacing) stats() PacingStats {
	if p == nil {
		return PacingStats{}
	}
	s := PacingStats{Queued: p.queued.Load(), QueuedBytes: p.queuedBytes.Load(), Dropped: p.dropped.Load(),
		DroppedBytes: p.droppedBytes.Load(), DelaySum: time.Duration(p.delaySum.Load())}
	for i := range s.DelayBuckets {
		s.DelayBuckets[i] = p.delay[i].Load()
	}
	return s
}

// pacingFactory makes a pacedConn per PeerConnection, after the PeerConnection's
// twccEstimator (registered after it, it runs before it on the way out: a packet is
// numbered and its send time recorded when it leaves the queue, so the estimator sees the
// path's delay, not the pacer's).
type pacingFactory struct {
	p   *pacing
	set *Estimates
}

// NewInterceptor paces the PeerConnection by its estimator's figure.
func (f *pacingFactory) NewInterceptor(id string) (interceptor.Interceptor, error) {
	f.set.mu.Lock()
	est, _ := f.set.byPC[id].(*twccEstimator)
	f.set.mu.Unlock()
	if est == nil {
		return &interceptor.NoOp{}, nil
	}
	core, err := pacer.New[*queuedPacket](f.p.cfg.Pacer)
	if err != nil {
		return nil, err
	}
	return &pacedConn{p: f.p, est: est, core: core}, nil
}

// pacedConn paces one PeerConnection.
type pacedConn struct {
	interceptor.NoOp
	p   *pacing
	est *twccEstimator

	mu       sync.Mutex
	core     *pacer.Pacer[*queuedPacket]
	rate     int // the estimate the core was last given (before the floor)
	eff      int // the rate the core was last given: rate, or floor when higher
	floor    int // 1.25 times what the connection was offered over the last measured second
	offered  int // bytes offered since winStart
	winStart time.Duration
	draining bool // the drain goroutine is writing packets it took: later ones wait behind them
	listed   bool // on the drain goroutine's list
	closed   bool
}

// BindLocalStream paces the stream: audio is only counted, video and its retransmissions
// (the stream's RTX SSRC) wait when the budget is spent.
func (c *pacedConn) BindLocalStream(info *interceptor.StreamInfo, w interceptor.RTPWriter) interceptor.RTPWriter {
	audio := strings.HasPrefix(strings.ToLower(info.MimeType), "audio/")
	rtx := info.SSRCRetransmission
	return interceptor.RTPWriterFunc(func(h *rtp.Header, payload []byte, a interceptor.Attributes) (int, error) {
		cls := pacer.Video
		switch {
		case audio:
			cls = pacer.Audio
		case rtx != 0 && h.SSRC == rtx:
			cls = pacer.Retransmission
		}
		size := h.MarshalSize() + len(payload)
		if c.send(cls, size, h, payload, w) {
			return w.Write(h, payload, a)
		}
		return size, nil
	})
}

// send says whether the packet leaves now; if not, it has been queued (or dropped).
func (c *pacedConn) send(cls pacer.Class, size int, h *rtp.Header, payload []byte, w interceptor.RTPWriter) bool {
	c.mu.Lock()
	c.offered += size
	r := int(c.est.rate.Load())
	if c.closed || (r == c.rate && !c.draining && c.core.TrySend(cls, size)) {
		c.mu.Unlock()
		return true
	}
	// The clock is read only here: the budget is spent, the estimate moved, or a queue.
	now := c.p.now()
	c.setRateLocked(now, r)
	if (!c.draining && c.core.Send(now, cls, size)) || cls == pacer.Audio {
		c.mu.Unlock()
		return true
	}
	q := c.p.pool.Get().(*queuedPacket)
	if !q.copyFrom(h, payload) {
		c.mu.Unlock()
		c.p.pool.Put(q)
		return true
	}
	q.w, q.at = w, now
	c.core.Push(now, size, q)
	c.p.queued.Add(1)
	c.p.queuedBytes.Add(uint64(size))
	c.dropLocked(now)
	activate := !c.listed
	c.listed = true
	c.mu.Unlock()
	if activate {
		c.p.activate(c)
	}
	return false
}

// floorWindow is how long the connection's offered rate is measured over for the floor.
const floorWindow = time.Second

// setRateLocked gives the core the estimate r, or, while the estimator sees no congestion, at
// least 1.25 times what the connection was offered over the last second: the allocator's own
// rule (congestion.md). The pacer smooths bursts; lowering what a viewer is sent is the
// allocator's decision, made only on congestion. Without the floor a delay-based dip (a
// viewer's late reads on a loaded machine) throttled a 2 Mbit/s track to 2.5 x the dip and
// the queue's bound dropped what it could not send (c.mu held).
func (c *pacedConn) setRateLocked(now time.Duration, r int) {
	if d := now - c.winStart; d >= floorWindow {
		c.floor = int(1.25 * float64(c.offered) * 8 / d.Seconds())
		c.offered, c.winStart = 0, now
	}
	eff := r
	if r > 0 && !c.est.congested.Load() {
		eff = max(r, c.floor)
	}
	if eff != c.eff {
		c.core.SetRate(now, eff)
	}
	c.rate, c.eff = r, eff
}

// dropLocked drops what is past the queue's bounds (c.mu held; nothing here does I/O).
func (c *pacedConn) dropLocked(now time.Duration) {
	for {
		q, ok := c.core.Drop(now)
		if !ok {
			return
		}
		c.p.dropped.Add(1)
		c.p.droppedBytes.Add(uint64(q.hdr.MarshalSize() + q.n))
		c.p.release(q)
	}
}

// take pops what the budget lets leave now into out, and marks the connection draining
// until drained: packets written meanwhile queue behind these.
func (c *pacedConn) take(now time.Duration, out []*queuedPacket) []*queuedPacket {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return out
	}
	c.setRateLocked(now, int(c.est.rate.Load()))
	c.dropLocked(now)
	for {
		q, ok := c.core.Pop(now)
		if !ok {
			break
		}
		out = append(out, q)
	}
	if len(out) > 0 {
		c.draining = true
	}
	for _, q := range out {
		c.p.waited(now - q.at)
	}
	return out
}

// drained ends a take.
func (c *pacedConn) drained(took bool) {
	if !took {
		return
	}
	c.mu.Lock()
	c.draining = false
	c.mu.Unlock()
}

// Close drops the connection's queue.
func (c *pacedConn) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	c.core.SetRate(c.p.now(), 0) // Pop gives everything
	for {
		q, ok := c.core.Pop(c.p.now())
		if !ok {
			return nil
		}
		c.p.release(q)
	}
}
