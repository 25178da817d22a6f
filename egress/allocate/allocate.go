package allocate

import (
	"slices"
	"time"
)

// Kind is what a track carries: audio is served before any video.
type Kind uint8

const (
	// Audio tracks are always given their bit rate: they are small and their loss is heard.
	Audio Kind = iota
	// Video tracks share what is left, by priority, a layer at a time.
	Video
)

// Track is one of a viewer's tracks as the allocator sees it.
type Track struct {
	ID   string
	Kind Kind
	// Priority orders video tracks (higher first; equal priorities keep the input order):
	// a screen share or the active speaker above thumbnails.
	Priority int
	// Layers are the bit rates of the track's layers in bit/s, lowest first: one entry for a
	// track without simulcast. A track with no layers (its rate unknown yet) is given its
	// top layer and costs nothing.
	Layers []int
}

// Target is the decision for one track: what the forwarder should send the viewer.
type Target struct {
	ID string
	// Layer is the highest layer to forward (an index into Track.Layers), or Paused.
	Layer int
	// Bitrate is that layer's bit rate (0 when paused).
	Bitrate int
	// Probing is set while the layer is above what the estimate covers, to find out whether
	// the path carries more (the estimate only grows with what is sent).
	Probing bool
}

// Paused is the Layer of a track that gets nothing.
const Paused = -1

// Allocation is the result for one viewer: a Target per track, in the order of the tracks
// given, and the budget they were fitted in.
type Allocation struct {
	Targets []Target
	// Budget is the part of the estimate spent on media; Used what the targets add up to
	// (more than Budget when audio alone exceeds it, or while probing).
	Budget, Used int
}

// Config tunes an Allocator; the zero value takes the defaults.
type Config struct {
	// Headroom is the share of the estimate to spend (default 0.9: the rest absorbs key
	// frames larger than the average and retransmissions).
	Headroom float64
	// UpMargin is how much more than a higher layer's rate the budget must hold before the
	// allocator moves up to it without probing (default 0.15), so that an estimate wavering
	// around a layer's rate does not flip it every tick. A budget that holds several layers
	// up with the margin moves up to the highest of them at once.
	UpMargin float64
	// ProbeAfter is how long a track waits below its top layer before one layer up is tried
	// anyway (default 3 s); each failed probe doubles the wait, up to ProbeMax (default
	// 6 s: the longest a viewer stays below a path that has become wide enough, plus the
	// probes' own time), and a probe that holds resets it. When the next layer fits the
	// budget without the margin the wait is halved.
	ProbeAfter, ProbeMax time.Duration
	// ProbeHold is the longest a probe keeps its layer while the estimate does not cover it
	// (default 4 s); it is confirmed as soon as the estimate has covered it for ProbeConfirm
	// (default 1 s), and the next layer up is then tried at once: a path that carried one
	// step more after a drop has most likely been freed, and each probe costs time.
	ProbeHold, ProbeConfirm time.Duration
}

func (c Config) withDefaults() Config {
	if c.Headroom <= 0 || c.Headroom > 1 {
		c.Headroom = 0.9
	}
	if c.UpMargin <= 0 {
		c.UpMargin = 0.15
	}
	if c.ProbeAfter <= 0 {
		c.ProbeAfter = 3 * time.Second
	}
	if c.ProbeMax < c.ProbeAfter {
		c.ProbeMax = max(6*time.Second, c.ProbeAfter)
	}
	if c.ProbeHold <= 0 {
		c.ProbeHold = 4 * time.Second
	}
	if c.ProbeConfirm <= 0 || c.ProbeConfirm > c.ProbeHold {
		c.ProbeConfirm = min(time.Second, c.ProbeHold)
	}
	return c
}

// Allocator decides, for one viewer, which layer of each of its tracks to send from the
// viewer's bandwidth estimate. It is sans-IO: the caller passes now and the estimate, and
// applies the targets; it keeps only what hysteresis and probing need between calls. It is
// not safe for concurrent use.
type Allocator struct {
	cfg    Config
	tracks map[string]*trackState
}

// trackState is what the allocator remembers of a video track.
type trackState struct {
	layer     int           // the layer given last time
	next      time.Time     // when the next probe may begin
	wait      time.Duration // the wait before a probe (doubled by failures)
	probe     bool          // layer is a probe not yet confirmed
	probeAt   time.Time     // when the probe began
	probeEst  int           // the estimate then
	coveredAt time.Time     // since when the estimate covers the probe's layer (zero: it does not)
}

// New returns an allocator with cfg (zero fields: the defaults).
func New(cfg Config) *Allocator {
	return &Allocator{cfg: cfg.withDefaults(), tracks: map[string]*trackState{}}
}

// Allocate fits the tracks into estimate (bit/s) at now. Tracks it has not seen before start
// at the highest layer that fits; tracks missing from the call are forgotten.
func (a *Allocator) Allocate(now time.Time, estimate int, tracks []Track) Allocation {
	budget := int(float64(estimate) * a.cfg.Headroom)
	out := Allocation{Targets: make([]Target, len(tracks)), Budget: budget}
	left := budget
	// Audio first, whatever it costs.
	for i, t := range tracks {
		out.Targets[i].ID = t.ID
		if t.Kind != Video {
			r := top(t.Layers)
			out.Targets[i].Layer, out.Targets[i].Bitrate = max(len(t.Layers)-1, 0), r
			left -= r
			out.Used += r
		}
	}
	for _, i := range byPriority(tracks) {
		tg := a.video(now, estimate, tracks[i], &left)
		tg.ID = tracks[i].ID
		out.Targets[i] = tg
		out.Used += tg.Bitrate
	}
	a.forget(tracks)
	return out
}

// video decides one video track's layer from what is left of the budget.
func (a *Allocator) video(now time.Time, estimate int, t Track, left *int) Target {
	if len(t.Layers) == 0 {
		return Target{Layer: 0}
	}
	st, known := a.tracks[t.ID]
	if !known {
		st = &trackState{layer: Paused, next: now.Add(a.cfg.ProbeAfter), wait: a.cfg.ProbeAfter}
		a.tracks[t.ID] = st
	}
	fits := fitting(t.Layers, *left, 0)               // highest layer within the budget
	comfy := fitting(t.Layers, *left, a.cfg.UpMargin) // ... with the margin moving up needs
	trial := st.probe && a.trial(now, estimate, st, fits)
	layer := st.layer
	switch {
	case !known:
		layer = fits
	case trial:
	case fits < st.layer:
		layer = fits // down at once
		if st.probe || now.Sub(st.probeAt) < a.cfg.ProbeHold {
			// The probe (or the step it confirmed early) was more than the path carries:
			// wait longer before the next.
			st.wait = min(2*st.wait, a.cfg.ProbeMax)
			st.probe = false
		}
		st.next = now.Add(st.wait)
	case comfy > st.layer:
		layer = comfy // the estimate alone carries it: no probe needed
		st.next = now.Add(a.cfg.ProbeAfter)
	case st.layer < len(t.Layers)-1 && !now.Before(st.next.Add(-a.headroomGain(st, fits))):
		layer = st.layer + 1
		st.probe, st.probeAt, st.probeEst, st.coveredAt = true, now, estimate, time.Time{}
	}
	st.layer = layer
	tg := Target{Layer: layer, Probing: st.probe}
	if layer != Paused {
		tg.Bitrate = t.Layers[layer]
		*left -= tg.Bitrate
	}
	return tg
}

// headroomGain is how much sooner than planned a track below its top is probed: by half
// its wait when the next layer fits the budget without the margin (the estimate has
// headroom, only not enough to move up on its own), so that a wavering estimate still waits
// for the backoff and cannot flip the layer every step.
func (a *Allocator) headroomGain(st *trackState, fits int) time.Duration {
	if fits > st.layer {
		return st.wait / 2
	}
	return 0
}

// trial reports whether a probe keeps its layer at now. A probe gets ProbeHold to raise the
// estimate (it grows only with what is sent, a step at a time) and fails early only if the
// estimate falls below where it began; it is confirmed once the estimate has covered its
// layer (fits) for ProbeConfirm, or when ProbeHold ends with the layer fitting. A confirmed
// probe resets the backoff and lets the next layer up be tried at once.
func (a *Allocator) trial(now time.Time, estimate int, st *trackState, fits int) bool {
	switch {
	case fits < st.layer:
		st.coveredAt = time.Time{}
	case st.coveredAt.IsZero():
		st.coveredAt = now
	}
	held := now.Sub(st.probeAt)
	confirmed := fits >= st.layer &&
		(held >= a.cfg.ProbeHold || now.Sub(st.coveredAt) >= a.cfg.ProbeConfirm)
	if confirmed {
		st.probe, st.wait, st.next = false, a.cfg.ProbeAfter, now
		return false
	}
	return held < a.cfg.ProbeHold && estimate >= st.probeEst
}

// fitting is the highest layer whose rate, raised by margin, fits in budget, or Paused.
func fitting(layers []int, budget int, margin float64) int {
	best := Paused
	for i, r := range layers {
		if float64(r)*(1+margin) <= float64(budget) {
			best = i
		}
	}
	return best
}

// byPriority is the indexes of the video tracks, highest priority first, stable.
func byPriority(tracks []Track) []int {
	idx := make([]int, 0, len(tracks))
	for i, t := range tracks {
		if t.Kind == Video {
			idx = append(idx, i)
		}
	}
	slices.SortStableFunc(idx, func(x, y int) int { return tracks[y].Priority - tracks[x].Priority })
	return idx
}

// forget drops the state of tracks no longer given (a viewer has a handful of tracks: a
// scan costs less than a set).
func (a *Allocator) forget(tracks []Track) {
	for id := range a.tracks {
		if !slices.ContainsFunc(tracks, func(t Track) bool { return t.ID == id }) {
			delete(a.tracks, id)
		}
	}
}

func top(layers []int) int {
	if len(layers) == 0 {
		return 0
	}
	return layers[len(layers)-1]
}
