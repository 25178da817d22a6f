package bwe_test

import (
	"math/rand/v2"
	"time"

	"github.com/pion/interceptor/pkg/twcc"

	"github.com/jetmedia/jetmedia/pipeline/bwe"
)

// path simulates a sender, a bottleneck link and a receiver that sends transport-wide
// feedback (pion's twcc.Recorder, as pion viewers build it) every 100 ms, in 1 ms steps. The
// sender's rate is fixed: the tests watch the estimate, not a control loop.
type path struct {
	est  *bwe.Estimator
	hist bwe.History
	rec  *twcc.Recorder
	rng  *rand.Rand

	// Link: capacity in bit/s (0: unlimited), tail-drop beyond maxQueue of queueing delay,
	// random loss, one-way delay.
	capacity int
	maxQueue time.Duration
	loss     float64
	oneWay   time.Duration

	// Sender: bit/s in 30 frames a second, 1200-byte packets.
	rate int

	now        time.Duration
	seq        uint16
	linkFree   time.Duration
	arrivals   []arrival // in flight to the receiver, in order
	feedbacks  []sentFeedback
	lastReport time.Duration
	nextFrame  time.Duration
	fbErrors   int
}

type arrival struct {
	seq uint16
	at  time.Duration
}

type sentFeedback struct {
	raw []byte
	at  time.Duration
}

func newPath(cfg bwe.Config) *path {
	return &path{est: bwe.New(cfg), rec: twcc.NewRecorder(1), rng: rand.New(rand.NewPCG(1, 2)),
		maxQueue: time.Second, oneWay: 20 * time.Millisecond, rate: 2_000_000}
}

const pktSize = 1200

// run advances the simulation by d.
func (p *path) run(d time.Duration) {
	for end := p.now + d; p.now < end; p.now += time.Millisecond {
		if p.now >= p.nextFrame {
			p.sendFrame()
			p.nextFrame += time.Second / 30
		}
		p.receive()
		p.deliverFeedback()
	}
}

func (p *path) sendFrame() {
	n := max(1, p.rate/30/8/pktSize)
	for range n {
		seq := p.seq
		p.seq++
		p.hist.Sent(seq, p.now, pktSize)
		if p.loss > 0 && p.rng.Float64() < p.loss {
			continue
		}
		out := p.now
		if p.capacity > 0 {
			out = max(p.now, p.linkFree) + time.Duration(pktSize*8*int64(time.Second)/int64(p.capacity))
			if out-p.now > p.maxQueue {
				continue // tail drop
			}
			p.linkFree = out
		}
		p.arrivals = append(p.arrivals, arrival{seq, out + p.oneWay})
	}
}

func (p *path) receive() {
	i := 0
	for ; i < len(p.arrivals) && p.arrivals[i].at <= p.now; i++ {
		a := p.arrivals[i]
		p.rec.Record(2, a.seq, int64(a.at/time.Microsecond))
	}
	p.arrivals = p.arrivals[i:]
	if p.now-p.lastReport >= 100*time.Millisecond {
		p.lastReport = p.now
		for _, pkt := range p.rec.BuildFeedbackPacket() {
			raw, err := pkt.Marshal()
			if err != nil {
				panic(err)
			}
			p.feedbacks = append(p.feedbacks, sentFeedback{raw, p.now + p.oneWay})
		}
	}
}

func (p *path) deliverFeedback() {
	for len(p.feedbacks) > 0 && p.feedbacks[0].at <= p.now {
		bwe.EachFeedback(p.feedbacks[0].raw, func(pkt []byte) {
			fb, err := bwe.ParseFeedback(pkt)
			if err != nil {
				p.fbErrors++
				return
			}
			p.est.OnFeedback(p.now, &fb, &p.hist)
		})
		p.feedbacks = p.feedbacks[1:]
	}
}

func (p *path) estimate() bwe.Estimate { return p.est.Estimate(p.now) }
