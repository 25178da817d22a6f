package forward

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtp"

	"github.com/jetmedia/jetmedia/pipeline/mediabus"
	"github.com/jetmedia/jetmedia/pipeline/stagetime"
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
	// gate pauses the output for want of bandwidth (congestion.go).
	gate atomic.Uint32
	// rtxStream resends on the viewer's RTX stream (rtx.go); nil: on the media stream.
	rtxStream *rtxStream
	// lane is the fan-out lane that writes to the output (set under the lane's lock; nil
	// while the output is in no fan-out, as during a layer switch's move).
	lane atomic.Pointer[lane]

	// A video viewer's start: isKey finds a key frame's first packet; set, the output is
	// dormant (gets nothing) until start, when its transport can carry packets; then its
	// first packets are the cached key frame and what followed it (fromCache; then skip the
	// live packets up to skipThrough, already sent), or it waits for the next key frame
	// (waitKey), for MaxKeyframeWait packets at most.
	// Written by add and start, then by the lane's writes, under the lane's lock.
	isKey       func(pkt []byte) bool
	dormant     bool
	fromCache   bool
	skip        bool
	skipThrough uint16
	waitKey     bool
	waited      int
}

// NewOutput returns an output that sends with the viewer's negotiated SSRC and payload type.
func NewOutput(ssrc uint32, payloadType uint8, w Writer) *Output {
	hw, _ := w.(HeaderWriter)
	return &Output{rw: Rewriter{SSRC: ssrc, PayloadType: payloadType}, w: w, hw: hw}
}

// StartAtKeyframe makes the viewer's first packet the first of a key frame, isKey telling
// which packets are (KeyframeStart). The output gets nothing once attached until the
// fan-out's start (pion drops what is written before the viewer's DTLS is done, so a key
// frame sent then is lost); then the fan-out's cache at once when it holds the newest key
// frame and what followed it (at most MaxReplay packets), else the publisher's next key
// frame. Call it before the output is attached.
func (o *Output) StartAtKeyframe(isKey func(pkt []byte) bool) { o.isKey, o.dormant = isKey, true }

// StartedFromCache reports whether the viewer's first packets were the track's cached key
// frame (so no key frame needs asking for). Read it after Attach, on the same goroutine.
func (o *Output) StartedFromCache() bool { return o.fromCache }

// MaxReplay is how many cached packets (the newest key frame and everything after it) a new
// viewer is sent at once: a key frame and some frames after it. A key frame older than that
// would hand a viewer a burst of stale frames to decode; the viewer waits for the next one
// (the node asks the publisher for it) instead.
const MaxReplay = 96

// MaxKeyframeWait bounds the packets a new viewer skips waiting for a key frame (about 2 s
// of 2 Mbit/s video): a publisher that ignores keyframe requests still gets played.
const MaxKeyframeWait = 512

// admit reports whether o takes pkt now, ending its start-up once it does (its lane's lock
// held).
func (o *Output) admit(pkt []byte) bool {
	if o.dormant {
		return false
	}
	if o.skip {
		if len(pkt) >= MinHeader && int16(uint16(pkt[2])<<8|uint16(pkt[3])-o.skipThrough) <= 0 {
			return false // sent from the cache already
		}
		o.skip = false
	}
	if o.waitKey {
		if !o.isKey(pkt) && o.waited < MaxKeyframeWait {
			o.waited++
			return false
		}
		o.waitKey = false
	}
	return true
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
	timings  *stagetime.Timings // nil: not timed
	// The newest key frame's first packet (under mu), found by isKey, the test of the first
	// video viewer that asked for one.
	isKey   func(pkt []byte) bool
	haveKey bool
	keySeq  uint16
	keySSRC uint32
	workers sync.WaitGroup
	closed  bool
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
	ring    *laneRing
	timings *stagetime.Timings
	wake    chan struct{} // cap 1: a packet is queued
	stop    chan struct{}
	full    atomic.Uint64 // packets not queued because the ring was full, times outputs
}

// laneRing is a single-producer (Forward, under the fan-out's lock), single-consumer (the
// lane's goroutine) queue of packets.
type laneRing struct {
	head, tail atomic.Uint64
	n          [ringSlots]int
	at         [ringSlots]int64 // when Forward had the packet (Unix nanoseconds, with timings)
	buf        [ringSlots][maxPacket]byte
}

// Forward sends one source packet to every output. It is the hot path: no allocation here.
func (f *Fanout) Forward(pkt []byte) {
	var start time.Time
	if f.timings != nil {
		start = time.Now()
		f.timings.Ingested(pkt, start)
	}
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
		seq := uint16(pkt[2])<<8 | uint16(pkt[3])
		f.newest.Store(uint32(seq))
		if f.isKey != nil && f.isKey(pkt) {
			f.haveKey, f.keySeq = true, seq
			f.keySSRC = uint32(pkt[8])<<24 | uint32(pkt[9])<<16 | uint32(pkt[10])<<8 | uint32(pkt[11])
		}
	}
	first := f.lanes[0]
	for _, l := range f.lanes[1:] {
		l.enqueue(pkt, start)
	}
	batch := f.batch
	f.mu.Unlock()

	first.mu.Lock()
	first.write(pkt, batch)
	first.mu.Unlock()
	if f.timings != nil {
		f.timings.Since(stagetime.Fanout, start)
	}
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
		if (o.gate.Load() != gateOpen && o.held()) || ((o.dormant || o.skip || o.waitKey) && !o.admit(pkt)) {
			continue
		}
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
			// Room for the viewer's own extensions (the transport-wide sequence number):
			// pion's SetExtension appends, which would allocate per packet on a nil slice.
			if cap(l.ext) == 0 {
				l.ext = make([]rtp.Extension, 0, 4)
			}
			l.hdr.Extensions = l.ext[:0]
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
func (l *lane) enqueue(pkt []byte, at time.Time) {
	r := l.ring
	h := r.head.Load()
	if h-r.tail.Load() >= ringSlots {
		// The lane's goroutine is a whole ring behind: its viewers lose this packet.
		l.full.Add(1)
		return
	}
	i := h % ringSlots
	r.n[i] = copy(r.buf[i][:], pkt)
	if l.timings != nil {
		r.at[i] = at.UnixNano()
	}
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
			if l.timings != nil {
				l.timings.Since(stagetime.Fanout, time.Unix(0, r.at[i]))
			}
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
	sent, rtx := 0, 0
	for i := range r.n {
		if wrapped, err := o.resend(r.buf[i][:r.len[i]]); err == nil {
			sent++
			if wrapped {
				rtx++
			}
		}
	}
	f.mu.Lock()
	f.Retransmitted += uint64(sent)
	f.RetransmittedRTX += uint64(rtx)
	f.mu.Unlock()
	return sent
}

// Stats are packet counters of a fan-out or of all of a hub's.
type Stats struct {
	// Forwarded, Retransmitted and Dropped count packets written to viewers, resent from the
	// cache on NACK, and not delivered (the sum of the Dropped* reasons below).
	Forwarded, Retransmitted, Dropped uint64
	// RetransmittedRTX counts the Retransmitted packets sent on a viewer's RTX stream.
	RetransmittedRTX uint64
	// ForwardedBytes is the size of the packets Forwarded (RTP header included).
	ForwardedBytes uint64
	// NACKs counts the NACK reports served, NACKed the sequence numbers they asked for.
	NACKs, NACKed uint64
	// Replayed counts packets sent to new viewers from the cache (the newest key frame and
	// what followed it), part of Forwarded.
	Replayed uint64
	// Why packets were dropped: not RTP (invalid), the viewer's transport refused the write,
	// larger than any MTU (oversize), or the node's media subscription overflowed (slow
	// consumer: the fan-out did not keep up with the track).
	DroppedInvalid, DroppedWrite, DroppedOversize, DroppedSlow uint64
}

func (s *Stats) plus(o Stats) {
	s.Forwarded += o.Forwarded
	s.Retransmitted += o.Retransmitted
	s.RetransmittedRTX += o.RetransmittedRTX
	s.Dropped += o.Dropped
	s.ForwardedBytes += o.ForwardedBytes
	s.NACKs += o.NACKs
	s.NACKed += o.NACKed
	s.DroppedInvalid += o.DroppedInvalid
	s.DroppedWrite += o.DroppedWrite
	s.DroppedOversize += o.DroppedOversize
	s.DroppedSlow += o.DroppedSlow
	s.Replayed += o.Replayed
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
// every open one has LaneMin outputs and more are allowed. An output that starts at a key
// frame stays dormant until start.
func (f *Fanout) add(o *Output) { f.insert(o, false) }

// insert adds o to a lane; moved says o comes from another layer's fan-out (a switch, at a
// key frame of this one): it keeps its start-up state (dormant only if it still was), but
// not a skip through the old layer's sequence numbers.
func (f *Fanout) insert(o *Output, moved bool) {
	f.mu.Lock()
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
		best = &lane{ring: new(laneRing), wake: make(chan struct{}, 1), stop: make(chan struct{}), timings: f.timings}
		f.lanes = append(f.lanes, best)
		nl, b := best, f.batch
		f.workers.Go(func() { nl.run(b) })
	}
	if o.isKey != nil && f.isKey == nil {
		f.isKey = o.isKey
	}
	best.mu.Lock()
	if moved && !o.dormant {
		// Moved here by a layer switch after its start: it arrives at this layer's key frame,
		// and what it skipped or waited for counted another layer's packets.
		o.skip, o.waitKey = false, false
	}
	best.outputs = append(best.outputs, o)
	o.lane.Store(best)
	best.mu.Unlock()
	f.mu.Unlock()
}

// start ends the dormancy of o (an output of StartAtKeyframe, now able to carry packets):
// it is sent the cached key frame and what followed, under its lane's lock so that no live
// packet overtakes them (not under the fan-out's), or waits for the next key frame. It
// reports whether o started from the cache; false also when o is not attached or was
// started already.
func (f *Fanout) start(o *Output) bool {
	f.mu.Lock()
	l := o.lane.Load()
	if l == nil || o.isKey == nil {
		f.mu.Unlock()
		return false
	}
	l.mu.Lock()
	if !o.dormant || !slices.Contains(l.outputs, o) {
		l.mu.Unlock()
		f.mu.Unlock()
		return false
	}
	o.dormant, o.waited = false, 0
	rp := f.replayLocked(o)
	batch := f.batch
	f.mu.Unlock()
	if rp != nil && !rp.write(o, batch, &l.stats) {
		// The transport dropped it (not ready after all): wait for a key frame instead.
		o.fromCache, o.skip, o.waitKey = false, false, true
	}
	l.mu.Unlock()
	return o.fromCache
}

// replay is a new viewer's first packets, copied out of the cache.
type replay struct {
	buf  []byte
	lens []int
}

// replayLocked copies the newest key frame and the packets after it out of the cache for o
// and has o skip them when they come live; when the cache does not hold them all (no key
// frame seen yet, too old, a packet lost) o waits for the next key frame instead (f.mu held).
func (f *Fanout) replayLocked(o *Output) *replay {
	newest := uint16(f.newest.Load())
	span := int(newest-f.keySeq) + 1
	if !f.haveKey || span > MaxReplay {
		o.waitKey = true
		return nil
	}
	r := &replay{buf: make([]byte, span*maxPacket), lens: make([]int, span)}
	for i := range span {
		n := f.cache.Get(f.keySSRC, f.keySeq+uint16(i), r.buf[i*maxPacket:(i+1)*maxPacket])
		if n == 0 {
			o.waitKey = true
			return nil
		}
		r.lens[i] = n
	}
	o.fromCache, o.skip, o.skipThrough = true, true, newest
	return r
}

// write sends the replay to o, rewritten (o's lane's lock held); false when the first
// packet's write took nothing without an error, as pion's does before the viewer's SRTP is
// up (the rest is not sent then).
func (r *replay) write(o *Output, batch Batcher, st *Stats) bool {
	if batch != nil {
		batch.Cork()
		defer batch.Uncork()
	}
	for i, n := range r.lens {
		b := r.buf[i*maxPacket : i*maxPacket+n]
		if !o.rw.Rewrite(b) {
			st.DroppedInvalid++
			st.Dropped++
			continue
		}
		w, err := o.w.Write(b)
		if err != nil {
			st.DroppedWrite++
			st.Dropped++
			continue
		}
		if w == 0 && i == 0 {
			return false
		}
		st.Forwarded++
		st.ForwardedBytes += uint64(n)
		st.Replayed++
	}
	return true
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
	bus     Subscriber
	batch   Batcher
	lanes   int
	timings *stagetime.Timings
	audio   *audioSel // nil: every audio track is forwarded (see Audio)

	congestion *Congestion // nil: no congestion control

	mu      sync.Mutex
	fanouts map[string]*hubEntry
	closed  bool
	retired Stats // counters of fan-outs already removed
}

type hubEntry struct {
	f       *Fanout
	sub     *mediabus.MediaSubscription
	gated   bool // an audio track behind the hub's audio choice
	room    string
	track   string
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

// Timings has the hub's fan-outs time their stages (stagetime.Ingest and Fanout) into t.
// Call it before the first Attach.
func (h *Hub) Timings(t *stagetime.Timings) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.timings = t
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
	return h.attach(room, track, SingleLayer, o, false)
}

// AttachLayer adds o to the fan-out of one layer of a track, subscribing to the layer on
// first use: a node subscribes only to the layers its viewers watch. The returned fanout
// serves the viewer's retransmissions; detach removes the output and unsubscribes when it
// was the last.
func (h *Hub) AttachLayer(room, track, layer string, o *Output) (*Fanout, func(), error) {
	return h.attach(room, track, layer, o, false)
}

func (h *Hub) attach(room, track, layer string, o *Output, audio bool) (*Fanout, func(), error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	key, e, err := h.entryLocked(room, track, layer, audio)
	if err != nil {
		return nil, nil, err
	}
	e.f.add(o)
	return e.f, h.detacher(key, e, o), nil
}

// entryLocked returns the fan-out of a track layer, subscribing to it when it has none (h.mu
// held). An audio track behind the hub's audio choice has its own fan-out: viewers of the
// track that do not follow the choice (WHEP) keep theirs.
func (h *Hub) entryLocked(room, track, layer string, audio bool) (string, *hubEntry, error) {
	key := room + "." + track + "." + layer
	gated := audio && h.audio != nil
	if gated {
		key += "#top"
	}
	if h.closed {
		return key, nil, ErrClosed
	}
	e, ok := h.fanouts[key]
	if !ok {
		f := &Fanout{batch: h.batch, maxLanes: h.lanes, timings: h.timings}
		deliver := f.Forward
		if gated {
			g, err := h.audio.add(room, track, f)
			if err != nil {
				return key, nil, fmt.Errorf("forward: attach %s: %w", key, err)
			}
			deliver = g.Forward
		}
		sub, err := h.bus.Subscribe(room, track, layer, deliver)
		if err != nil {
			if gated {
				h.audio.remove(room, track)
			}
			return key, nil, fmt.Errorf("forward: attach %s: %w", key, err)
		}
		e = &hubEntry{f: f, sub: sub, gated: gated, room: room, track: track}
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
		if e.gated {
			h.audio.remove(e.room, e.track)
		}
	}
}

// layerFanouts is the fan-out of each of a track's layers on this node, nil where none.
func (h *Hub) layerFanouts(room, track string, layers []string) []*Fanout {
	out := make([]*Fanout, len(layers))
	h.mu.Lock()
	defer h.mu.Unlock()
	for i, l := range layers {
		if e := h.fanouts[room+"."+track+"."+l]; e != nil {
			out[i] = e.f
		}
	}
	return out
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
	if h.audio != nil {
		h.audio.close()
	}
}
