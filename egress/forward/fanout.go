package forward

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/pion/rtp"

	"github.com/jetmedia/jetmedia/pipeline/mediabus"
)

// Writer takes a finished RTP packet for one viewer; pion's TrackLocalWriter is one.
type Writer interface {
	Write(pkt []byte) (int, error)
}

// HeaderWriter takes a packet as a parsed header and its payload; pion's TrackLocalWriter is
// one. The fan-out parses each packet once for all such writers, where a Writer given bytes
// parses them again (pion's allocates a packet for it, per viewer and packet).
type HeaderWriter interface {
	WriteRTP(h *rtp.Header, payload []byte) (int, error)
}

// Output is one viewer's binding to a track: its rewriter and where its packets go.
type Output struct {
	rw  Rewriter
	w   Writer
	hw  HeaderWriter // w, when it takes parsed headers
	rtx *rtxBuffer   // the viewer's retransmissions, made at its first NACK
	// lane is the fan-out lane that writes to the output (set under the lane's lock; nil
	// while the output is in no fan-out, as during a layer switch's move).
	lane atomic.Pointer[lane]
}

// NewOutput returns an output that sends with the viewer's negotiated SSRC and payload type.
func NewOutput(ssrc uint32, payloadType uint8, w Writer) *Output {
	hw, _ := w.(HeaderWriter)
	return &Output{rw: Rewriter{SSRC: ssrc, PayloadType: payloadType}, w: w, hw: hw}
}

// Subscriber subscribes to a track's media subject; mediabus.MediaBus is one.
type Subscriber interface {
	Subscribe(room, track, layer string, fn func(data []byte)) (*mediabus.MediaSubscription, error)
}

// Batcher groups the viewers' writes of one packet: between Cork and Uncork the writes are
// queued, and Uncork sends them together (rtc.Edge batches its shared UDP socket's writes).
type Batcher interface {
	Cork()
	Uncork()
}

// Fanout delivers one track to every Output on this node from one subscription, keeping one
// retransmission cache for all of them.
//
// Its outputs are split into lanes. Forward writes the first lane's itself; with more than
// one lane allowed (Hub.Lanes) and enough viewers, further lanes each get a goroutine of
// their own that writes a copy of every packet to its share of the viewers, so that a
// packet's fan-out runs on several cores at once. A lane's goroutine is woken once per burst
// of packets, not per packet: Forward queues the packet in the lane's ring and goes on.
type Fanout struct {
	mu       sync.Mutex // guards cache, newest, lanes (the slice) and Stats
	cache    Cache
	batch    Batcher       // nil: every write goes out on its own
	newest   atomic.Uint32 // sequence number of the newest source packet (written under mu)
	maxLanes int           // 0 or 1: one lane, written by Forward
	lanes    []*lane
	workers  sync.WaitGroup
	closed   bool
	// switches are the layer switches waiting for a packet of this fan-out (a key frame) to
	// move their output here (see Hub.Switch); nil when none wait, so Forward pays one load.
	switches atomic.Pointer[[]*pendingSwitch]
	// Stats holds the fan-out's own counters (oversize drops, NACK service); the lanes keep
	// their forwarding counters. Read the sum with Counters.
	Stats
}

// LaneMin is the number of viewers a lane must have before the next one is opened: below it,
// waking another goroutine costs more than writing the packets.
const LaneMin = 24

// ringSlots is how many packets a lane's goroutine may lag behind Forward: a burst of a
// keyframe's packets fits; beyond it the lane's viewers lose the packet (counted as slow).
const ringSlots = 256

// lane is a share of a fan-out's outputs and what writes to them.
type lane struct {
	mu      sync.Mutex // held while a packet is written to the lane's outputs; guards them and stats
	outputs []*Output
	scratch [maxPacket]byte
	src     rtp.Header // the packet being written, parsed once for the HeaderWriters
	hdr     rtp.Header // its copy rewritten for one viewer
	ext     []rtp.Extension
	stats   Stats

	// A worker lane's queue (nil for the first lane, which Forward writes itself).
	ring *laneRing
	wake chan struct{} // cap 1: a packet is queued
	stop chan struct{}
	full atomic.Uint64 // packets not queued because the ring was full, times outputs
}

// laneRing is a single-producer (Forward, under the fan-out's lock), single-consumer (the
// lane's goroutine) queue of packets.
type laneRing struct {
	head, tail atomic.Uint64
	n          [ringSlots]int
	buf        [ringSlots][maxPacket]byte
}

// Forward sends one source packet to every output. It is the hot path: no allocation here.
func (f *Fanout) Forward(pkt []byte) {
	if f.switches.Load() != nil {
		f.switchAt(pkt) // before the packet is written: a moved output gets it
	}
	f.mu.Lock()
	if len(f.lanes) == 0 {
		f.mu.Unlock()
		return
	}
	if len(pkt) > maxPacket {
		n := uint64(f.outputsLocked())
		f.DroppedOversize += n
		f.Dropped += n
		f.mu.Unlock()
		return
	}
	f.cache.Put(pkt)
	if len(pkt) >= MinHeader {
		f.newest.Store(uint32(pkt[2])<<8 | uint32(pkt[3]))
	}
	first := f.lanes[0]
	for _, l := range f.lanes[1:] {
		l.enqueue(pkt)
	}
	batch := f.batch
	f.mu.Unlock()

	first.mu.Lock()
	first.write(pkt, batch)
	first.mu.Unlock()
}

// outputsLocked counts the outputs of every lane (f.mu held; lane membership only changes
// under it too).
func (f *Fanout) outputsLocked() int {
	n := 0
	for _, l := range f.lanes {
		n += len(l.outputs)
	}
	return n
}

// write sends pkt to the lane's outputs (l.mu held).
func (l *lane) write(pkt []byte, batch Batcher) {
	if len(l.outputs) == 0 {
		return
	}
	if batch != nil && len(l.outputs) > 1 {
		batch.Cork()
		defer batch.Uncork()
	}
	var payload []byte
	parsed, valid := false, false
	for _, o := range l.outputs {
		if o.hw != nil {
			if !parsed {
				parsed = true
				n, err := l.src.Unmarshal(pkt)
				valid = err == nil && l.src.Version == 2
				payload = pkt[min(n, len(pkt)):]
			}
			if !valid {
				l.stats.DroppedInvalid++
				l.stats.Dropped++
				continue
			}
			l.hdr = l.src
			if len(l.src.Extensions) > 0 {
				// A writer's interceptors may set extensions: not in the shared parse.
				l.ext = append(l.ext[:0], l.src.Extensions...)
				l.hdr.Extensions = l.ext
			}
			o.rw.RewriteHeader(&l.hdr)
			if _, err := o.hw.WriteRTP(&l.hdr, payload); err != nil {
				l.stats.DroppedWrite++
				l.stats.Dropped++
				continue
			}
			l.stats.Forwarded++
			l.stats.ForwardedBytes += uint64(len(pkt))
			continue
		}
		n := copy(l.scratch[:], pkt)
		b := l.scratch[:n]
		if !o.rw.Rewrite(b) {
			l.stats.DroppedInvalid++
			l.stats.Dropped++
			continue
		}
		if _, err := o.w.Write(b); err != nil {
			l.stats.DroppedWrite++
			l.stats.Dropped++
			continue
		}
		l.stats.Forwarded++
		l.stats.ForwardedBytes += uint64(n)
	}
}

// enqueue copies pkt into the lane's ring and wakes its goroutine (f.mu held: one producer).
func (l *lane) enqueue(pkt []byte) {
	r := l.ring
	h := r.head.Load()
	if h-r.tail.Load() >= ringSlots {
		// The lane's goroutine is a whole ring behind: its viewers lose this packet.
		l.full.Add(1)
		return
	}
	i := h % ringSlots
	r.n[i] = copy(r.buf[i][:], pkt)
	r.head.Store(h + 1)
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// run is a worker lane's goroutine: it writes every queued packet until stop.
func (l *lane) run(batch Batcher) {
	r := l.ring
	for {
		select {
		case <-l.wake:
		case <-l.stop:
			return
		}
		for t := r.tail.Load(); t != r.head.Load(); t++ {
			i := t % ringSlots
			l.mu.Lock()
			l.write(r.buf[i][:r.n[i]], batch)
			l.mu.Unlock()
			r.tail.Store(t + 1)
		}
	}
}

// counters are the lane's forwarding counters, ring overflows included.
func (l *lane) counters() Stats {
	l.mu.Lock()
	s := l.stats
	n := uint64(len(l.outputs))
	l.mu.Unlock()
	// A full ring drops the packet for every output the lane had then; the lane's current
	// size is close enough for a counter.
	slow := l.full.Load() * n
	s.DroppedSlow += slow
	s.Dropped += slow
	return s
}

// MaxRetransmit bounds the packets resent for one NACK report, and RetransmitAge how far
// behind the track's newest packet a resent one may be (256 packets: about a second of 2 Mbit/s
// video). A viewer that lost more is better served by a keyframe (its decoder asks with a
// PLI) than by a burst of stale packets: when an overloaded machine makes a hundred viewers
// each ask for hundreds of packets, resending them all takes the CPU the live packets need,
// and the losses feed themselves.
const (
	MaxRetransmit = 32
	RetransmitAge = 256
)

// rtxBuffer holds one viewer's packets to resend, copied out of the cache.
type rtxBuffer struct {
	n   int
	src [MaxRetransmit]uint16 // source sequence numbers asked for
	len [MaxRetransmit]int
	buf [MaxRetransmit][maxPacket]byte
}

// Retransmit resends the packets a viewer reported lost (its outgoing sequence numbers) from
// the cache, at most MaxRetransmit of them and none older than RetransmitAge, and returns how
// many were sent. The packets are copied and rewritten under the fan-out's and the viewer's
// lane's locks, one after the other, but written after them, so that serving many viewers'
// NACKs does not hold up the live packets. Calls for one output must not overlap (a viewer's
// RTCP reader makes them).
func (f *Fanout) Retransmit(o *Output, lost []uint16) int {
	if o.rtx == nil {
		o.rtx = new(rtxBuffer) // once per viewer that ever NACKs
	}
	r := o.rtx
	r.n = 0
	l := o.lane.Load()
	if l == nil {
		return 0 // not (or no longer) an output of a fan-out
	}
	// The viewer's numbering belongs to its lane.
	newest := uint16(f.newest.Load())
	l.mu.Lock()
	if o.lane.Load() != l { // moved to another layer's fan-out meanwhile
		l.mu.Unlock()
		return 0
	}
	ssrc := o.rw.Source()
	for _, seq := range lost {
		if r.n == MaxRetransmit {
			break
		}
		if src, ok := o.rw.SourceSeq(seq); ok && uint16(newest-src) <= RetransmitAge {
			r.src[r.n] = src
			r.n++
		}
	}
	l.mu.Unlock()

	f.mu.Lock()
	f.NACKs++
	f.NACKed += uint64(len(lost))
	kept := 0
	for i := range r.n {
		n := f.cache.Get(ssrc, r.src[i], r.buf[kept][:])
		if n == 0 {
			continue
		}
		r.len[kept] = n
		kept++
	}
	batch := f.batch
	f.mu.Unlock()

	l.mu.Lock()
	r.n = 0
	if o.lane.Load() != l {
		kept = 0
	}
	for i := range kept {
		if o.rw.Rewrite(r.buf[i][:r.len[i]]) {
			r.len[r.n] = r.len[i]
			if r.n != i {
				copy(r.buf[r.n][:], r.buf[i][:r.len[i]])
			}
			r.n++
		}
	}
	l.mu.Unlock()

	if batch != nil && r.n > 1 {
		batch.Cork()
		defer batch.Uncork()
	}
	sent := 0
	for i := range r.n {
		if _, err := o.w.Write(r.buf[i][:r.len[i]]); err == nil {
			sent++
		}
	}
	f.mu.Lock()
	f.Retransmitted += uint64(sent)
	f.mu.Unlock()
	return sent
}

// Stats are packet counters of a fan-out or of all of a hub's.
type Stats struct {
	// Forwarded, Retransmitted and Dropped count packets written to viewers, resent from the
	// cache on NACK, and not delivered (the sum of the Dropped* reasons below).
	Forwarded, Retransmitted, Dropped uint64
	// ForwardedBytes is the size of the packets Forwarded (RTP header included).
	ForwardedBytes uint64
	// NACKs counts the NACK reports served, NACKed the sequence numbers they asked for.
	NACKs, NACKed uint64
	// Why packets were dropped: not RTP (invalid), the viewer's transport refused the write,
	// larger than any MTU (oversize), or the node's media subscription overflowed (slow
	// consumer: the fan-out did not keep up with the track).
	DroppedInvalid, DroppedWrite, DroppedOversize, DroppedSlow uint64
}

func (s *Stats) plus(o Stats) {
	s.Forwarded += o.Forwarded
	s.Retransmitted += o.Retransmitted
	s.Dropped += o.Dropped
	s.ForwardedBytes += o.ForwardedBytes
	s.NACKs += o.NACKs
	s.NACKed += o.NACKed
	s.DroppedInvalid += o.DroppedInvalid
	s.DroppedWrite += o.DroppedWrite
	s.DroppedOversize += o.DroppedOversize
	s.DroppedSlow += o.DroppedSlow
}

// Counters returns the fan-out's packet counters.
func (f *Fanout) Counters() Stats {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := f.Stats
	for _, l := range f.lanes {
		s.plus(l.counters())
	}
	return s
}

// add gives o to the lane with the fewest outputs, opening a lane (and its goroutine) when
// every open one has LaneMin outputs and more are allowed.
func (f *Fanout) add(o *Output) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.lanes) == 0 {
		f.lanes = []*lane{{}}
	}
	best := f.lanes[0]
	for _, l := range f.lanes[1:] {
		if len(l.outputs) < len(best.outputs) {
			best = l
		}
	}
	if len(best.outputs) >= LaneMin && len(f.lanes) < f.maxLanes && !f.closed {
		best = &lane{ring: new(laneRing), wake: make(chan struct{}, 1), stop: make(chan struct{})}
		f.lanes = append(f.lanes, best)
		nl, b := best, f.batch
		f.workers.Go(func() { nl.run(b) })
	}
	best.mu.Lock()
	best.outputs = append(best.outputs, o)
	o.lane.Store(best)
	best.mu.Unlock()
}

// remove takes o out of its lane and returns how many outputs the fan-out has left. Lanes
// stay open until close (viewers come and go; a lane costs nothing while idle).
func (f *Fanout) remove(o *Output) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, l := range f.lanes {
		l.mu.Lock()
		for i, x := range l.outputs {
			if x == o {
				l.outputs = append(l.outputs[:i], l.outputs[i+1:]...)
				o.lane.CompareAndSwap(l, nil)
				break
			}
		}
		l.mu.Unlock()
	}
	return f.outputsLocked()
}

// close stops the fan-out's lane goroutines and waits for them; it is idempotent.
func (f *Fanout) close() {
	f.mu.Lock()
	if !f.closed {
		f.closed = true
		for _, l := range f.lanes[min(1, len(f.lanes)):] {
			close(l.stop)
		}
	}
	f.mu.Unlock()
	f.workers.Wait()
}

// Hub keeps one Fanout per track that has viewers on this node.
type Hub struct {
	bus   Subscriber
	batch Batcher
	lanes int

	mu      sync.Mutex
	fanouts map[string]*hubEntry
	closed  bool
	retired Stats // counters of fan-outs already removed
}

type hubEntry struct {
	f       *Fanout
	sub     *mediabus.MediaSubscription
	waiting int // layer switches waiting for a packet of f (under Hub.mu)
}

// stats are the fan-out's counters plus the packets its subscription dropped because the
// fan-out fell behind (counted by nats.go, read here rather than on the hot path).
func (e *hubEntry) stats() Stats {
	s := e.f.Counters()
	if n, err := e.sub.Dropped(); err == nil && n > 0 {
		s.DroppedSlow += uint64(n)
		s.Dropped += uint64(n)
	}
	return s
}

// ErrClosed is returned by Attach after Close.
var ErrClosed = errors.New("forward: hub closed")

// NewHub returns a hub subscribing through bus.
func NewHub(bus Subscriber) *Hub { return &Hub{bus: bus, fanouts: map[string]*hubEntry{}} }

// Batch makes the hub's fan-outs group each packet's writes through b. Call it before the
// first Attach.
func (h *Hub) Batch(b Batcher) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.batch = b
}

// Lanes lets each of the hub's fan-outs write its packets from up to n goroutines (one lane
// per LaneMin viewers): on a machine with idle cores a track with many viewers is fanned out
// in parallel. 0 or 1 keeps every fan-out on the goroutine that delivers its packets. Call it
// before the first Attach.
func (h *Hub) Lanes(n int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.lanes = n
}

// Attach adds o to the fan-out of the track's single layer (SingleLayer); see AttachLayer.
func (h *Hub) Attach(room, track string, o *Output) (*Fanout, func(), error) {
	return h.AttachLayer(room, track, SingleLayer, o)
}

// AttachLayer adds o to the fan-out of one layer of a track, subscribing to the layer on
// first use: a node subscribes only to the layers its viewers watch. The returned fanout
// serves the viewer's retransmissions; detach removes the output and unsubscribes when it
// was the last.
func (h *Hub) AttachLayer(room, track, layer string, o *Output) (*Fanout, func(), error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	key, e, err := h.entryLocked(room, track, layer)
	if err != nil {
		return nil, nil, err
	}
	e.f.add(o)
	return e.f, h.detacher(key, e, o), nil
}

// entryLocked returns the fan-out of a track layer, subscribing to it when it has none (h.mu
// held).
func (h *Hub) entryLocked(room, track, layer string) (string, *hubEntry, error) {
	key := room + "." + track + "." + layer
	if h.closed {
		return key, nil, ErrClosed
	}
	e, ok := h.fanouts[key]
	if !ok {
		f := &Fanout{batch: h.batch, maxLanes: h.lanes}
		sub, err := h.bus.Subscribe(room, track, layer, f.Forward)
		if err != nil {
			return key, nil, fmt.Errorf("forward: attach %s: %w", key, err)
		}
		e = &hubEntry{f: f, sub: sub}
		h.fanouts[key] = e
	}
	return key, e, nil
}

// detacher is the detach function of o on e.
func (h *Hub) detacher(key string, e *hubEntry, o *Output) func() {
	var once sync.Once
	return func() {
		once.Do(func() {
			h.mu.Lock()
			defer h.mu.Unlock()
			h.releaseLocked(key, e, e.f.remove(o))
		})
	}
}

// releaseLocked unsubscribes e when it has no outputs left and no switch waits for it (h.mu
// held).
func (h *Hub) releaseLocked(key string, e *hubEntry, outputs int) {
	if outputs == 0 && e.waiting == 0 && h.fanouts[key] == e {
		st := e.stats()
		_ = e.sub.Unsubscribe()
		e.f.close()
		delete(h.fanouts, key)
		h.retired.plus(st)
	}
}

// Tracks is the number of track layers with a subscription on this node (one per track
// without simulcast).
func (h *Hub) Tracks() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.fanouts)
}

// Stats sums the counters of every fan-out the hub has had.
func (h *Hub) Stats() Stats {
	h.mu.Lock()
	defer h.mu.Unlock()
	s := h.retired
	for _, e := range h.fanouts {
		s.plus(e.stats())
	}
	return s
}

// Close unsubscribes every track.
func (h *Hub) Close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	for k, e := range h.fanouts {
		_ = e.sub.Unsubscribe()
		e.f.close()
		delete(h.fanouts, k)
	}
}
