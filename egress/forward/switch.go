package forward

import (
	"errors"
	"slices"
)

// SingleLayer is the layer of a track published without simulcast.
const SingleLayer = "0"

// pendingSwitch is an output waiting to move from one layer's fan-out to another's at the
// first packet of the new layer that ready accepts (a key frame's first packet).
type pendingSwitch struct {
	hub      *Hub
	o        *Output
	ready    func(pkt []byte) bool
	from, to *hubEntry
	fromKey  string
	toKey    string
	done     func(f *Fanout, detach func())
	state    int // switchWaiting, switchMoved, switchCancelled; under Hub.mu
}

const (
	switchWaiting = iota
	switchMoved
	switchCancelled
)

// Switch moves o, attached to layer from of a track (AttachLayer), to layer to at the first
// packet of to that ready accepts: a viewer changes layers only at a key frame, and its
// Rewriter keeps the sequence numbers and timestamps continuous across the change of
// source. Until then o keeps receiving layer from. The move runs on the new layer's delivery
// goroutine, which then calls done with the new fan-out and the detach function that
// replaces the old one (the old one becomes a no-op for the move's purposes; calling it is
// harmless). cancel drops a switch that has not happened yet and reports whether it did
// that (false: the move happened, or cancel was called before).
func (h *Hub) Switch(room, track, from, to string, o *Output, ready func(pkt []byte) bool,
	done func(f *Fanout, detach func())) (cancel func() bool, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	fromKey := room + "." + track + "." + from
	fe, ok := h.fanouts[fromKey]
	if !ok {
		return nil, ErrNotAttached
	}
	toKey, te, err := h.entryLocked(room, track, to, false)
	if err != nil {
		return nil, err
	}
	te.waiting++
	sw := &pendingSwitch{hub: h, o: o, ready: ready, from: fe, to: te, fromKey: fromKey, toKey: toKey, done: done}
	te.f.watch(sw)
	return func() bool { return h.cancelSwitch(sw) }, nil
}

// cancelSwitch drops sw unless it moved already.
func (h *Hub) cancelSwitch(sw *pendingSwitch) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if sw.state != switchWaiting {
		return false
	}
	sw.state = switchCancelled
	sw.to.f.unwatch(sw)
	sw.to.waiting--
	h.releaseLocked(sw.toKey, sw.to, sw.to.f.outputs())
	return true
}

// move carries out sw (on the new layer's delivery goroutine, before the packet that
// triggered it is written).
func (h *Hub) move(sw *pendingSwitch) {
	h.mu.Lock()
	if sw.state != switchWaiting {
		h.mu.Unlock()
		return
	}
	sw.state = switchMoved
	sw.to.f.unwatch(sw)
	sw.to.waiting--
	left := sw.from.f.remove(sw.o)
	sw.to.f.insert(sw.o, true)
	h.releaseLocked(sw.fromKey, sw.from, left)
	detach := h.detacher(sw.toKey, sw.to, sw.o)
	h.mu.Unlock()
	if sw.done != nil {
		sw.done(sw.to.f, detach)
	}
}

// watch adds a pending switch to the fan-out.
func (f *Fanout) watch(sw *pendingSwitch) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var list []*pendingSwitch
	if cur := f.switches.Load(); cur != nil {
		list = slices.Clone(*cur)
	}
	list = append(list, sw)
	f.switches.Store(&list)
}

// unwatch drops a pending switch from the fan-out.
func (f *Fanout) unwatch(sw *pendingSwitch) {
	f.mu.Lock()
	defer f.mu.Unlock()
	cur := f.switches.Load()
	if cur == nil {
		return
	}
	list := slices.DeleteFunc(slices.Clone(*cur), func(x *pendingSwitch) bool { return x == sw })
	if len(list) == 0 {
		f.switches.Store(nil)
		return
	}
	f.switches.Store(&list)
}

// switchAt moves the outputs whose switch pkt completes (Forward's goroutine, no lock held).
func (f *Fanout) switchAt(pkt []byte) {
	cur := f.switches.Load()
	if cur == nil {
		return
	}
	for _, sw := range *cur {
		if sw.ready == nil || sw.ready(pkt) {
			sw.hub.move(sw)
		}
	}
}

// outputs counts the fan-out's outputs.
func (f *Fanout) outputs() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.outputsLocked()
}

// ErrNotAttached is returned by Switch for a layer the hub has no fan-out of.
var ErrNotAttached = errors.New("forward: not attached to that layer")
