package forward

import (
	"errors"
	"fmt"
	"sync"

	"github.com/jetmedia/jetmedia/pipeline"
)

// Writer takes a finished RTP packet for one viewer; pion's TrackLocalWriter is one.
type Writer interface {
	Write(pkt []byte) (int, error)
}

// Output is one viewer's binding to a track: its rewriter and where its packets go.
type Output struct {
	rw  Rewriter
	w   Writer
	rtx *rtxBuffer // the viewer's retransmissions, made at its first NACK
}

// NewOutput returns an output that sends with the viewer's negotiated SSRC and payload type.
func NewOutput(ssrc uint32, payloadType uint8, w Writer) *Output {
	return &Output{rw: Rewriter{SSRC: ssrc, PayloadType: payloadType}, w: w}
}

// Subscriber subscribes to a track's media subject; pipeline.MediaBus is one.
type Subscriber interface {
	Subscribe(room, track, layer string, fn func(data []byte)) (*pipeline.MediaSubscription, error)
}

// Batcher groups the viewers' writes of one packet: between Cork and Uncork the writes are
// queued, and Uncork sends them together (rtc.Edge batches its shared UDP socket's writes).
type Batcher interface {
	Cork()
	Uncork()
}

// Fanout delivers one track to every Output on this node from one subscription, keeping one
// retransmission cache for all of them.
type Fanout struct {
	mu      sync.Mutex
	outputs []*Output
	cache   Cache
	batch   Batcher // nil: every write goes out on its own
	newest  uint16  // sequence number of the newest source packet
	scratch [maxPacket]byte
	// Stats are the fan-out's counters, kept under mu (plain adds, no allocation); read them
	// with Counters while the fanout is in use.
	Stats
}

// Forward sends one source packet to every output. It is the hot path: no allocation here.
func (f *Fanout) Forward(pkt []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(pkt) > maxPacket {
		f.DroppedOversize += uint64(len(f.outputs))
		f.Dropped += uint64(len(f.outputs))
		return
	}
	f.cache.Put(pkt)
	if len(pkt) >= MinHeader {
		f.newest = uint16(pkt[2])<<8 | uint16(pkt[3])
	}
	if f.batch != nil && len(f.outputs) > 1 {
		f.batch.Cork()
		defer f.batch.Uncork()
	}
	for _, o := range f.outputs {
		n := copy(f.scratch[:], pkt)
		b := f.scratch[:n]
		if !o.rw.Rewrite(b) {
			f.DroppedInvalid++
			f.Dropped++
			continue
		}
		if _, err := o.w.Write(b); err != nil {
			f.DroppedWrite++
			f.Dropped++
			continue
		}
		f.Forwarded++
		f.ForwardedBytes += uint64(n)
	}
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
	len [MaxRetransmit]int
	buf [MaxRetransmit][maxPacket]byte
}

// Retransmit resends the packets a viewer reported lost (its outgoing sequence numbers) from
// the cache, at most MaxRetransmit of them and none older than RetransmitAge, and returns how
// many were sent. The packets are copied and rewritten under the fan-out's lock but written
// after it, so that serving many viewers' NACKs does not hold up the live packets. Calls for
// one output must not overlap (a viewer's RTCP reader makes them).
func (f *Fanout) Retransmit(o *Output, lost []uint16) int {
	if o.rtx == nil {
		o.rtx = new(rtxBuffer) // once per viewer that ever NACKs
	}
	r := o.rtx
	r.n = 0
	f.mu.Lock()
	f.NACKs++
	f.NACKed += uint64(len(lost))
	for _, seq := range lost {
		if r.n == MaxRetransmit {
			break
		}
		src, ok := o.rw.SourceSeq(seq)
		if !ok || uint16(f.newest-src) > RetransmitAge {
			continue
		}
		n := f.cache.Get(o.rw.Source(), src, r.buf[r.n][:])
		if n == 0 || !o.rw.Rewrite(r.buf[r.n][:n]) {
			continue
		}
		r.len[r.n] = n
		r.n++
	}
	batch := f.batch
	f.mu.Unlock()

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
	return f.Stats
}

func (f *Fanout) add(o *Output) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.outputs = append(f.outputs, o)
}

func (f *Fanout) remove(o *Output) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, x := range f.outputs {
		if x == o {
			f.outputs = append(f.outputs[:i], f.outputs[i+1:]...)
			break
		}
	}
	return len(f.outputs)
}

// Hub keeps one Fanout per track that has viewers on this node.
type Hub struct {
	bus   Subscriber
	batch Batcher

	mu      sync.Mutex
	fanouts map[string]*hubEntry
	closed  bool
	retired Stats // counters of fan-outs already removed
}

type hubEntry struct {
	f   *Fanout
	sub *pipeline.MediaSubscription
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

// Attach adds o to the track's fan-out, subscribing to the track on first use. The returned
// fanout serves the viewer's retransmissions; detach removes the output and unsubscribes when
// it was the last.
func (h *Hub) Attach(room, track string, o *Output) (*Fanout, func(), error) {
	key := room + "." + track
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, nil, ErrClosed
	}
	e, ok := h.fanouts[key]
	if !ok {
		f := &Fanout{batch: h.batch}
		sub, err := h.bus.Subscribe(room, track, "0", f.Forward)
		if err != nil {
			return nil, nil, fmt.Errorf("forward: attach %s: %w", key, err)
		}
		e = &hubEntry{f: f, sub: sub}
		h.fanouts[key] = e
	}
	e.f.add(o)
	var once sync.Once
	detach := func() {
		once.Do(func() {
			h.mu.Lock()
			defer h.mu.Unlock()
			if e.f.remove(o) == 0 && h.fanouts[key] == e {
				st := e.stats()
				_ = e.sub.Unsubscribe()
				delete(h.fanouts, key)
				h.retired.plus(st)
			}
		})
	}
	return e.f, detach, nil
}

// Tracks is the number of tracks with a subscription on this node.
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
		delete(h.fanouts, k)
	}
}
