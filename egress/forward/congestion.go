package forward

import (
	"context"
	"log/slog"
	"slices"
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
// reads each viewer's estimate, measures its tracks' rates (each simulcast layer's from its
// fan-out on this node, else nominal), runs the viewer's allocate Allocator, moves each
// simulcast track to the layer allotted (Track.SetTarget with Bitrate and LayerRates: the
// switch happens at the layer's next key frame) and pauses the video tracks given nothing,
// not even their lowest layer (resuming them, with a key-frame request, when given a layer
// again).
type Congestion struct {
	// Estimates gives the viewers' estimates.
	Estimates Estimator
	// Interval is how often allocations run (default 500 ms).
	Interval time.Duration
	// Allocator configures each viewer's allocator.
	Allocator allocate.Config
	// Log gets a debug line each time a simulcast viewer's state changes (the layer asked
	// for, the layer it is on, paused or not) with the estimate it was decided from; nil:
	// slog.Default().
	Log *slog.Logger

	mu      sync.Mutex
	outputs map[*Output]*bweOutput
	viewers map[string]*allocate.Allocator // by connection
	rates   map[*Fanout]*fanoutRate

	// Pauses and Resumes count the video outputs paused and resumed for want of bandwidth.
	Pauses, Resumes atomic.Uint64
	// LayerDowns and LayerUps count the simulcast layer changes asked of viewer tracks
	// (each happens at the new layer's next key frame).
	LayerDowns, LayerUps atomic.Uint64
}

// bweOutput is what the controller knows of a bound output.
type bweOutput struct {
	sender   string
	kind     allocate.Kind
	fan      *Fanout // a single-layer track's; a simulcast one's moves with the layer
	track    *Track  // a simulcast track (with Layers), else nil
	keyframe func(layer string)
	// A simulcast track's layer last asked for (-1: none yet) and since when it is on its
	// lowest allowed layer with not even that layer allotted (Step's goroutine).
	asked      int
	unfitSince time.Time
	logged     loggedState // the state last logged (Step's goroutine)
}

// fanoutRate measures a track's rate from its fan-out's forwarded bytes per open output.
type fanoutRate struct {
	bytes uint64
	at    time.Time
	rate  int
}

// add registers an output of t bound to a viewer's sender; nil-safe, so a hub without
// congestion control costs nothing.
func (c *Congestion) add(sender string, t *Track, o *Output, fan *Fanout) {
	if c == nil {
		return
	}
	b := &bweOutput{sender: sender, kind: allocate.Video, fan: fan, keyframe: t.OnKeyframeRequest, asked: -1}
	if t.MediaKind == "audio" {
		b.kind = allocate.Audio
	} else if len(t.Layers) > 0 {
		b.track = t
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.outputs == nil {
		c.outputs, c.viewers, c.rates = map[*Output]*bweOutput{}, map[string]*allocate.Allocator{}, map[*Fanout]*fanoutRate{}
	}
	c.outputs[o] = b
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

// view is one output's state in a step.
type view struct {
	out  *Output
	info *bweOutput
	fan  *Fanout // the fan-out the output is attached to now
	// A simulcast track's current layer (an index into its Layers), target, and each
	// layer's fan-out on this node (nil where none).
	layer     int
	target    LayerTarget
	layerFans []*Fanout
}

// snapshot reads an output's state (the track's and the hub's locks, not c.mu).
func snapshot(o *Output, b *bweOutput) *view {
	v := &view{out: o, info: b, fan: b.fan}
	if t := b.track; t != nil {
		fan, layer, target := t.current()
		if fan != nil {
			v.fan = fan
		}
		v.layer, v.target = max(slices.Index(t.Layers, layer), 0), target
		v.layerFans = t.Hub.layerFanouts(t.Room, t.TrackID, t.Layers)
	}
	return v
}

// viewer is one connection's outputs in a step.
type viewer struct {
	estimate  int
	congested bool
	views     []*view
}

// Step runs one round of allocations at now. Run calls it; tests may call it directly, from
// one goroutine at a time.
func (c *Congestion) Step(now time.Time) {
	c.mu.Lock()
	outs := make([]*Output, 0, len(c.outputs))
	infos := make([]*bweOutput, 0, len(c.outputs))
	for o, b := range c.outputs {
		outs = append(outs, o)
		infos = append(infos, b)
	}
	c.mu.Unlock()

	views := make([]*view, len(outs))
	for i := range outs {
		views[i] = snapshot(outs[i], infos[i])
	}
	rates := c.measure(now, views)
	byConn := map[string]*viewer{}
	for _, w := range views {
		conn, bitrate, congested, ok := c.Estimates.Estimate(w.info.sender)
		if !ok {
			continue
		}
		v := byConn[conn]
		if v == nil {
			v = &viewer{estimate: bitrate, congested: congested}
			byConn[conn] = v
		}
		v.views = append(v.views, w)
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
	tracks := make([]allocate.Track, len(v.views))
	spans := make([]layerSpan, len(v.views))
	sending := 0
	for i, w := range v.views {
		tracks[i] = allocate.Track{ID: w.info.sender, Kind: w.info.kind}
		open := w.out.gate.Load() != gatePaused
		if w.info.track != nil {
			sp := spanOf(w, rates)
			spans[i] = sp
			tracks[i].Layers = sp.allotted()
			if open {
				sending += int(sp.rates[w.layer])
			}
			continue
		}
		if r := rates[w.fan]; r > 0 {
			tracks[i].Layers = []int{r}
			if open {
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
		w := v.views[i]
		open := tg.Layer != allocate.Paused
		if w.info.track != nil {
			open = w.info.keepOpen(now, w.layer == spans[i].lo, open)
			c.setLayer(w, spans[i], spans[i].lo+max(tg.Layer, 0))
		}
		c.apply(w.out, w.info, open)
		if w.info.track != nil {
			c.logChange(w, tg, open, v, estimate, sending)
		}
	}
}

// loggedState is what logChange compares: the layer a simulcast output is on and the one
// asked for (indexes), whether it is open and whether the allocator probes.
type loggedState struct {
	on, asked     int
	open, probing bool
}

// logChange writes a debug line when a simulcast output's state differs from the last one
// logged, with what it was decided from.
func (c *Congestion) logChange(w *view, tg allocate.Target, open bool, v *viewer, estimate, sending int) {
	b := w.info
	st := loggedState{on: w.layer, asked: max(b.asked, 0), open: open, probing: tg.Probing}
	if st == b.logged {
		return
	}
	b.logged = st
	log := c.Log
	if log == nil {
		log = slog.Default()
	}
	if !log.Enabled(context.Background(), slog.LevelDebug) {
		return // spares boxing the attributes for 1000s of viewers a step
	}
	log.Debug("congestion: simulcast viewer", "track", b.track.TrackID, "sender", b.sender,
		"on", b.track.Layers[st.on], "asked", b.track.Layers[st.asked], "open", open, "probing", tg.Probing,
		"estimate", estimate, "gcc", v.estimate, "congested", v.congested, "sending", sending)
}

// lowestGrace is how long a simulcast track on its lowest layer must be allotted nothing
// before it is paused for want of bandwidth: the estimate just after a higher layer (or a
// probe) overflowed the path undershoots for seconds (loss, a deflated loss-based estimate)
// and says little about whether the lowest layer fits; a pause freezes the picture until the
// next probe resumes it.
const lowestGrace = 2 * time.Second

// keepOpen reports whether a simulcast output stays open at now: it is allotted a layer, or
// it has not been starved on its lowest layer (onLowest) for lowestGrace. Every step must
// come through here, allotted or not, so that one that fits ends the count.
func (b *bweOutput) keepOpen(now time.Time, onLowest, allotted bool) bool {
	starved := b.starved(now, onLowest && !allotted)
	return allotted || !starved
}

// starved reports whether the output has been on its lowest allowed layer with nothing
// allotted (unfit) for lowestGrace at now without a break (Step's goroutine).
func (b *bweOutput) starved(now time.Time, unfit bool) bool {
	if !unfit {
		b.unfitSince = time.Time{}
		return false
	}
	if b.unfitSince.IsZero() {
		b.unfitSince = now
	}
	return now.Sub(b.unfitSince) >= lowestGrace
}

// layerSpan is a simulcast track's layers as the allocator is given them: every layer's rate
// (measured on this node, else nominal; always less than the layer above) and the layers
// lo..hi the viewer's target allows (its manual layer alone; else up to its size's layer).
type layerSpan struct {
	rates  []uint64
	lo, hi int
}

func (sp layerSpan) allotted() []int {
	out := make([]int, 0, sp.hi-sp.lo+1)
	for _, r := range sp.rates[sp.lo : sp.hi+1] {
		out = append(out, int(r))
	}
	return out
}

// spanOf is the span of a simulcast output's track.
func spanOf(w *view, rates map[*Fanout]int) layerSpan {
	t := w.info.track
	n := len(t.Layers)
	sp := layerSpan{rates: make([]uint64, n)}
	for i := range n {
		if f := w.layerFans[i]; f != nil && rates[f] > 0 {
			sp.rates[i] = uint64(rates[f])
		} else {
			sp.rates[i] = LayerTarget{}.rate(n, i)
		}
	}
	below(sp.rates)
	choose := t.Choose
	if choose == nil {
		choose = ChooseLayer
	}
	bySize := w.target
	bySize.Bitrate, bySize.LayerRates = 0, nil
	sp.hi = slices.Index(t.Layers, choose(t.Layers, bySize))
	if sp.hi < 0 {
		sp.hi = n - 1
	}
	if w.target.Manual != "" && t.Layers[sp.hi] == w.target.Manual {
		sp.lo = sp.hi
	}
	return sp
}

// below makes each layer's rate less than the one above it (lowest first), so that the
// chooser, given layer k's rate as the bit rate, picks k itself: with a tie (a measured top
// layer below a lower layer's nominal rate, as from a loaded publisher) it picked the higher
// layer, and a probe meant for h went to f.
func below(rates []uint64) {
	for i := len(rates) - 2; i >= 0; i-- {
		if rates[i+1] > 1 {
			rates[i] = min(rates[i], rates[i+1]-1)
		}
	}
}

// setLayer gives a simulcast output the bit rate of its layer k: its chooser then picks k,
// and the track switches to it at k's next key frame.
func (c *Congestion) setLayer(w *view, sp layerSpan, k int) {
	b := w.info
	if b.asked != k {
		if b.asked >= 0 && k < b.asked {
			c.LayerDowns.Add(1)
		} else if b.asked >= 0 {
			c.LayerUps.Add(1)
		}
		b.asked = k
	}
	err := b.track.SetTarget(func(lt *LayerTarget) { lt.Bitrate, lt.LayerRates = sp.rates[k], sp.rates })
	if err != nil {
		slog.Warn("congestion: layer switch failed", "track", b.track.TrackID, "layer", b.track.Layers[k], "err", err)
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
			layer := ""
			if b.track != nil {
				layer = b.track.SimulcastLayer()
			}
			b.keyframe(layer) // the viewer's decoder needs one to show the track again
		}
	}
}

// measure returns each fan-out's rate per open output in bit/s, keeping the last one while
// every output of a fan-out is paused (or, for a simulcast layer's fan-out, none of the
// viewers here is on it).
func (c *Congestion) measure(now time.Time, views []*view) map[*Fanout]int {
	open := map[*Fanout]int{}
	for _, w := range views {
		if w.fan == nil {
			continue
		}
		if w.out.gate.Load() != gatePaused {
			open[w.fan]++
		} else if _, ok := open[w.fan]; !ok {
			open[w.fan] = 0
		}
		for _, f := range w.layerFans {
			if _, ok := open[f]; f != nil && !ok {
				open[f] = 0
			}
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
