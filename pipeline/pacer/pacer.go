package pacer

import (
	"errors"
	"fmt"
	"time"
)

// Class is what a packet is, for the pacer's priorities.
type Class uint8

// Classes of packets.
const (
	// Video is media that may wait and, past the queue's bounds, be dropped.
	Video Class = iota
	// Retransmission is a resend (RTX or NACK repair): paced and queued like video.
	Retransmission
	// Audio is never queued: it is sent at once, its size debited from the budget.
	Audio
)

// Config bounds a connection's pacer.
type Config struct {
	// Factor multiplies the connection's estimate to give the pacing rate (0: 2.5).
	Factor float64
	// Window is how much of the pacing rate may leave at once after a quiet spell: the
	// bucket's depth (0: 40 ms; never below two full packets).
	Window time.Duration
	// MaxDelay drops a queued packet that has waited this long (0: 500 ms): a key frame that
	// old is better replaced by the next one than delivered.
	MaxDelay time.Duration
	// MaxPackets and MaxBytes bound the queue (0: 1024 packets, 1 MiB).
	MaxPackets, MaxBytes int
}

// ErrConfig is returned by Validate for a bound that cannot work.
var ErrConfig = errors.New("pacer: bad config")

// minDepth is the budget a connection may always burst: two packets of a full MTU.
const minDepth = 2 * 1500

// Defaults fills what is zero.
func (c Config) Defaults() Config {
	if c.Factor == 0 {
		c.Factor = 2.5
	}
	if c.Window == 0 {
		c.Window = 40 * time.Millisecond
	}
	if c.MaxDelay == 0 {
		c.MaxDelay = 500 * time.Millisecond
	}
	if c.MaxPackets == 0 {
		c.MaxPackets = 1024
	}
	if c.MaxBytes == 0 {
		c.MaxBytes = 1 << 20
	}
	return c
}

// Validate says what is wrong with c (after Defaults).
func (c Config) Validate() error {
	switch {
	case c.Factor < 1 || c.Factor > 100:
		return fmt.Errorf("%w: factor %v outside [1, 100]", ErrConfig, c.Factor)
	case c.Window < 0 || c.MaxDelay < 0 || c.MaxPackets < 0 || c.MaxBytes < 0:
		return fmt.Errorf("%w: negative bound", ErrConfig)
	}
	return nil
}

// Stats are a pacer's counters.
type Stats struct {
	// Queued counts the packets (and QueuedBytes their bytes) that had to wait.
	Queued, QueuedBytes uint64
	// Dropped counts the queued packets (and DroppedBytes their bytes) dropped past a bound.
	Dropped, DroppedBytes uint64
	// MaxDelay is the longest a packet waited before it left.
	MaxDelay time.Duration
}

type entry[T any] struct {
	item T
	size int
	at   time.Duration
}

// Pacer paces one connection; T is the shell's handle of a queued packet (a pooled copy).
// The zero rate (before SetRate, or SetRate(0)) paces nothing: every packet is sent.
type Pacer[T any] struct {
	cfg    Config
	rate   float64 // bytes per second of pacing (factor times the estimate); 0: off
	depth  float64 // the budget's ceiling
	budget float64 // bytes that may leave now; may go below 0 by what audio took
	last   time.Duration

	q     []entry[T] // ring
	head  int
	n     int
	bytes int
	stats Stats
}

// New returns a pacer; cfg gets Defaults and must Validate.
func New[T any](cfg Config) (*Pacer[T], error) {
	cfg = cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Pacer[T]{cfg: cfg}, nil
}

// SetRate sets the connection's estimate in bit/s (0 turns pacing off). now is when.
func (p *Pacer[T]) SetRate(now time.Duration, bitsPerSecond int) {
	p.refill(now)
	if bitsPerSecond <= 0 {
		p.rate, p.depth = 0, 0
		return
	}
	first := p.rate == 0
	p.rate = p.cfg.Factor * float64(bitsPerSecond) / 8
	p.depth = max(p.rate*p.cfg.Window.Seconds(), minDepth)
	if first {
		p.budget = p.depth
	}
	p.budget = min(p.budget, p.depth)
}

// refill adds what the rate earned since the last call.
func (p *Pacer[T]) refill(now time.Duration) {
	if now > p.last {
		if p.rate > 0 {
			p.budget = min(p.budget+p.rate*(now-p.last).Seconds(), p.depth)
		}
		p.last = now
	}
}

// Send says whether a packet of size bytes may leave now; when it may, its size is taken
// from the budget. False means the shell must Push it (a copy: the caller's buffer is
// reused). Audio always leaves.
func (p *Pacer[T]) Send(now time.Duration, c Class, size int) bool {
	if p.rate == 0 {
		return true
	}
	p.refill(now)
	return p.TrySend(c, size)
}

// TrySend is Send without a clock: it lets the packet out while the budget last refilled
// has some left, so the caller reads its clock only when it is spent (the refill is then
// computed for the whole time since, capped at the window). A connection below its rate
// thus reads the clock about once per window's worth of bytes. The laziness can grant up
// to one window more in a burst than an exact bucket: what was spent while the bucket was
// full. False means: call Send with the time.
func (p *Pacer[T]) TrySend(c Class, size int) bool {
	if p.rate == 0 {
		return true
	}
	if c == Audio {
		p.budget = max(p.budget-float64(size), -p.depth)
		return true
	}
	if p.n > 0 || p.budget <= 0 {
		return false
	}
	p.budget -= float64(size)
	return true
}

// Push queues a packet Send refused. The queue's bounds are kept by Drop.
func (p *Pacer[T]) Push(now time.Duration, size int, item T) {
	if p.n == len(p.q) {
		p.grow()
	}
	p.q[(p.head+p.n)%len(p.q)] = entry[T]{item: item, size: size, at: now}
	p.n++
	p.bytes += size
	p.stats.Queued++
	p.stats.QueuedBytes += uint64(size)
}

func (p *Pacer[T]) grow() {
	q := make([]entry[T], max(2*len(p.q), 16))
	for i := range p.n {
		q[i] = p.q[(p.head+i)%len(p.q)]
	}
	p.q, p.head = q, 0
}

// Drop removes the oldest queued packet when the queue is past a bound (packets, bytes, or
// the oldest has waited MaxDelay) and returns it for the shell to release; ok is false when
// the queue is within its bounds. Call it until it returns false.
func (p *Pacer[T]) Drop(now time.Duration) (item T, ok bool) {
	if p.n == 0 {
		return item, false
	}
	e := p.q[p.head]
	if p.n <= p.cfg.MaxPackets && p.bytes <= p.cfg.MaxBytes && now-e.at < p.cfg.MaxDelay {
		return item, false
	}
	p.pop()
	p.stats.Dropped++
	p.stats.DroppedBytes += uint64(e.size)
	return e.item, true
}

// Pop returns the next queued packet if the budget lets it leave now (and takes its size
// from the budget); ok is false when the queue is empty or the budget is spent. With pacing
// off (rate 0) every queued packet leaves.
func (p *Pacer[T]) Pop(now time.Duration) (item T, ok bool) {
	if p.n == 0 {
		return item, false
	}
	p.refill(now)
	if p.rate > 0 && p.budget <= 0 {
		return item, false
	}
	e := p.pop()
	p.budget -= float64(e.size)
	if d := now - e.at; d > p.stats.MaxDelay {
		p.stats.MaxDelay = d
	}
	return e.item, true
}

func (p *Pacer[T]) pop() entry[T] {
	e := p.q[p.head]
	var zero entry[T]
	p.q[p.head] = zero
	p.head = (p.head + 1) % len(p.q)
	p.n--
	p.bytes -= e.size
	return e
}

// Len is the number of packets queued and their bytes.
func (p *Pacer[T]) Len() (packets, bytes int) { return p.n, p.bytes }

// Stats returns the pacer's counters.
func (p *Pacer[T]) Stats() Stats { return p.stats }

// Rate is the pacing rate in bit/s (0: off).
func (p *Pacer[T]) Rate() int { return int(p.rate * 8) }
