package forward

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jetmedia/jetmedia/egress/allocate"
)

// Estimator gives a viewer's bandwidth estimate by the id of one of its senders (a
// TrackLocalContext's ID): conn names the viewer's connection (its tracks share the estimate),
// bitrate is in bit/s, congested says whether the estimator sees loss or growing delay.
// rtc.Estimates is one.
type Estimator interface {
	Estimate(sender string) (conn string, bitrate int, congested, ok bool)
}

// Output gate states: open forwards, paused withholds every packet, resume opens at the next
// packet with the viewer's numbering carried on without a gap.
const (
	gateOpen uint32 = iota
	gatePaused
	gateResume
)

// held reports whether o withholds the packet now being written (its lane's lock held). A
// resumed output continues its sequence numbers and timestamps after the last packet it
// sent, as after a change of source: the viewer sees no gap to NACK.
func (o *Output) held() bool {
	if o.gate.CompareAndSwap(gateResume, gateOpen) {
		o.rw.resync()
		return false
	}
	return o.gate.Load() == gatePaused
}

// resync makes the next packet continue the viewer's stream as if from a new source.
func (r *Rewriter) resync() {
	if r.started {
		r.srcSSRC = ^r.srcSSRC // differs from whatever SSRC comes next from the same source
	}
}

// Congestion applies each viewer's bandwidth allocation to its tracks: every Interval it
// reads each viewer's estimate, measures its tracks' rates, runs the viewer's allocate
// Allocator and pauses the video tracks given nothing (resuming them, with a key-frame
// request, when given a layer again). With one layer per track that is all it can do; the
// allocation's targets are what a layer chooser takes once tracks have several.
type Congestion struct {
	// Estimates gives the viewers' estimates.
	Estimates Estimator
	// Interval is how often allocations run (default 500 ms).
	Interval time.Duration
	// Allocator configures each viewer's allocator.
	Allocator allocate.Config

	mu      sync.Mutex
	outputs map[*Output]*bweOutput
	viewers map[string]*allocate.Allocator // by connection
	rates   map[*Fanout]*fanoutRate

	// Pauses and Resumes count the video outputs paused and resumed for want of bandwidth.
	Pauses, Resumes atomic.Uint64
}

// bweOutput is what the controller knows of a bound output.
type bweOutput struct {
	sender   string
	kind     allocate.Kind
	fan      *Fanout
	keyframe func()
}

// fanoutRate measures a track's rate from its fan-out's forwarded bytes per open output.
type fanoutRate struct {
	bytes uint64
	at    time.Time
	rate  int
}

// add registers an output bound to a viewer's sender; nil-safe, so a hub without congestion
// control costs nothing.
func (c *Congestion) add(sender, kind string, o *Output, fan *Fanout, keyframe func()) {
	if c == nil {
		return
	}
	k := allocate.Video
	if kind == "audio" {
		k = allocate.Audio
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.outputs == nil {
		c.outputs, c.viewers, c.rates = map[*Output]*bweOutput{}, map[string]*allocate.Allocator{}, map[*Fanout]*fanoutRate{}
	}
	c.outputs[o] = &bweOutput{sender: sender, kind: k, fan: fan, keyframe: keyframe}
}

// remove forgets an output.
func (c *Congestion) remove(o *Output) {
	if c == nil || o == nil {
		return
	}
	c.mu.Lock()
	delete(c.outputs, o)
	c.mu.Unlock()
}

// uncongestedHeadroom is the estimate, in percent of what a viewer is sent, assumed while its
// path shows no congestion: enough that the allocator's 90 % budget keeps every track on.
const uncongestedHeadroom = 125

// Congest makes the hub's viewers subject to c: call it before the first Attach.
func (h *Hub) Congest(c *Congestion) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.congestion = c
}

func (h *Hub) congestionControl() *Congestion {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.congestion
}

// Run allocates every Interval until ctx ends.
func (c *Congestion) Run(ctx context.Context) {
	every := c.Interval
	if every <= 0 {
		every = 500 * time.Millisecond
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			c.Step(now)
		}
	}
}

// viewer is one connection's outputs in a step.
type viewer struct {
	estimate  int
	congested bool
	outs      []*Output
	infos     []*bweOutput
}

// Step runs one round of allocations at now. Run calls it; tests may call it directly.
func (c *Congestion) Step(now time.Time) {
	c.mu.Lock()
	outs := make([]*Output, 0, len(c.outputs))
	infos := make([]*bweOutput, 0, len(c.outputs))
	for o, b := range c.outputs {
		outs = append(outs, o)
		infos = append(infos, b)
	}
	c.mu.Unlock()

	rates := c.measure(now, outs, infos)
	byConn := map[string]*viewer{}
	for i, b := range infos {
		conn, bitrate, congested, ok := c.Estimates.Estimate(b.sender)
		if !ok {
			continue
		}
		v := byConn[conn]
		if v == nil {
			v = &viewer{estimate: bitrate, congested: congested}
			byConn[conn] = v
		}
		v.outs, v.infos = append(v.outs, outs[i]), append(v.infos, b)
	}
	for conn, v := range byConn {
		c.allocate(now, conn, v, rates)
	}
	c.mu.Lock()
	for conn := range c.viewers {
		if byConn[conn] == nil {
			delete(c.viewers, conn)
		}
	}
	c.mu.Unlock()
}

// allocate runs one viewer's allocator and applies its targets.
func (c *Congestion) allocate(now time.Time, conn string, v *viewer, rates map[*Fanout]int) {
	c.mu.Lock()
	a := c.viewers[conn]
	if a == nil {
		a = allocate.New(c.Allocator)
		c.viewers[conn] = a
	}
	c.mu.Unlock()
	tracks := make([]allocate.Track, len(v.outs))
	sending := 0
	for i, b := range v.infos {
		tracks[i] = allocate.Track{ID: b.sender, Kind: b.kind}
		if r := rates[b.fan]; r > 0 {
			tracks[i].Layers = []int{r}
			if v.outs[i].gate.Load() != gatePaused {
				sending += r
			}
		}
	}
	estimate := v.estimate
	if !v.congested {
		// No loss, no growing delay: the path carries what is sent, whatever the estimate
		// has grown to so far (it starts at 1 Mbit/s and grows with what arrives).
		estimate = max(estimate, sending*uncongestedHeadroom/100)
	}
	alloc := a.Allocate(now, estimate, tracks)
	for i, tg := range alloc.Targets {
		c.apply(v.outs[i], v.infos[i], tg.Layer != allocate.Paused)
	}
}

// apply opens or pauses one output.
func (c *Congestion) apply(o *Output, b *bweOutput, open bool) {
	switch {
	case !open && o.gate.Swap(gatePaused) != gatePaused:
		c.Pauses.Add(1)
	case open && o.gate.CompareAndSwap(gatePaused, gateResume):
		c.Resumes.Add(1)
		if b.keyframe != nil {
			b.keyframe() // the viewer's decoder needs one to show the track again
		}
	}
}

// measure returns each fan-out's rate per open output in bit/s, keeping the last one while
// every output of a fan-out is paused.
func (c *Congestion) measure(now time.Time, outs []*Output, infos []*bweOutput) map[*Fanout]int {
	open := map[*Fanout]int{}
	for i, b := range infos {
		if _, ok := open[b.fan]; !ok {
			open[b.fan] = 0
		}
		if outs[i].gate.Load() != gatePaused {
			open[b.fan]++
		}
	}
	forwarded := make(map[*Fanout]uint64, len(open))
	for f := range open {
		forwarded[f] = f.Counters().ForwardedBytes // the fan-out's locks, not c.mu
	}
	out := make(map[*Fanout]int, len(open))
	c.mu.Lock()
	defer c.mu.Unlock()
	for f, n := range open {
		bytes := forwarded[f]
		r := c.rates[f]
		if r == nil {
			r = &fanoutRate{bytes: bytes, at: now}
			c.rates[f] = r
		} else if dt := now.Sub(r.at).Seconds(); dt > 0 {
			if n > 0 && bytes > r.bytes {
				sample := int(float64(bytes-r.bytes) * 8 / dt / float64(n))
				if r.rate == 0 {
					r.rate = sample
				} else {
					r.rate = (r.rate + sample) / 2 // a key frame's burst weighs half
				}
			}
			r.bytes, r.at = bytes, now
		}
		out[f] = r.rate
	}
	for f := range c.rates {
		if _, ok := open[f]; !ok {
			delete(c.rates, f)
		}
	}
	return out
}
