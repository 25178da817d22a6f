package netimpair

import (
	"math/rand/v2"
	"time"
)

// Link is what one direction of a relay does to the datagrams it carries. The zero Link
// passes everything at once.
type Link struct {
	// Loss is the share of datagrams dropped at random, 0 to 1.
	Loss float64
	// Delay is added to every datagram; Jitter adds a further random 0..Jitter. Datagrams
	// keep their order (a late one holds back those behind it, as on a real queue).
	Delay, Jitter time.Duration
	// Rate caps the link in bits per second (0: no cap), as a token bucket of Burst bytes
	// (0: 10 ms at Rate, at least one datagram) draining into a queue that holds at most
	// Queue of sending time (0: 200 ms); what does not fit is dropped, as a router's tail drop.
	Rate  int
	Burst int
	Queue time.Duration
}

// Verdict is what a link decided for one datagram.
type Verdict uint8

const (
	// Pass: deliver the datagram at the returned time.
	Pass Verdict = iota
	// Lost: dropped at random (Loss).
	Lost
	// Overflow: dropped because the queue behind the rate cap was full.
	Overflow
)

// shaper is the sans-IO state of one direction: given a datagram's size and arrival time it
// says when (and whether) the datagram leaves.
type shaper struct {
	link Link
	rnd  *rand.Rand
	// busy is when the bottleneck finishes sending what it has accepted so far; last is the
	// delivery time of the previous datagram (order is kept).
	busy, last time.Time
}

func newShaper(seed uint64) *shaper {
	return &shaper{rnd: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
}

// set changes the link; the queue already accepted keeps its times.
func (s *shaper) set(l Link) { s.link = l }

// admit decides for a datagram of n bytes arriving at now.
func (s *shaper) admit(n int, now time.Time) (Verdict, time.Time) {
	l := s.link
	if l.Loss > 0 && s.rnd.Float64() < l.Loss {
		return Lost, time.Time{}
	}
	out := now
	if l.Rate > 0 {
		out = s.shape(n, now)
		if out.IsZero() {
			return Overflow, time.Time{}
		}
	}
	out = out.Add(l.Delay)
	if l.Jitter > 0 {
		out = out.Add(time.Duration(s.rnd.Int64N(int64(l.Jitter) + 1)))
	}
	if out.Before(s.last) {
		out = s.last
	}
	s.last = out
	return Pass, out
}

// shape runs the token bucket: the time the datagram has left the bottleneck, or zero when
// the queue is full.
func (s *shaper) shape(n int, now time.Time) time.Time {
	l := s.link
	burst := l.Burst
	if burst <= 0 {
		burst = max(l.Rate/8/100, 1500)
	}
	queue := l.Queue
	if queue <= 0 {
		queue = 200 * time.Millisecond
	}
	// A bucket of burst bytes is the bottleneck allowed to run burst's worth ahead of now.
	credit := time.Duration(int64(burst) * 8 * int64(time.Second) / int64(l.Rate))
	start := s.busy
	if floor := now.Add(-credit); start.Before(floor) {
		start = floor
	}
	if start.Sub(now) > queue {
		return time.Time{}
	}
	s.busy = start.Add(time.Duration(int64(n) * 8 * int64(time.Second) / int64(l.Rate)))
	if s.busy.Before(now) {
		return now
	}
	return s.busy
}
