package forward

import (
	"errors"
	"fmt"
	"sync"

	"github.com/nats-io/nats.go"
)

// Writer takes a finished RTP packet for one viewer; pion's TrackLocalWriter is one.
type Writer interface {
	Write(pkt []byte) (int, error)
}

// Output is one viewer's binding to a track: its rewriter and where its packets go.
type Output struct {
	rw Rewriter
	w  Writer
}

// NewOutput returns an output that sends with the viewer's negotiated SSRC and payload type.
func NewOutput(ssrc uint32, payloadType uint8, w Writer) *Output {
	return &Output{rw: Rewriter{SSRC: ssrc, PayloadType: payloadType}, w: w}
}

// Subscriber subscribes to a track's media subject; pipeline.MediaBus is one.
type Subscriber interface {
	Subscribe(room, track, layer string, fn func(data []byte)) (*nats.Subscription, error)
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

// Retransmit resends the packets a viewer reported lost (its outgoing sequence numbers) from
// the cache, and returns how many were found.
func (f *Fanout) Retransmit(o *Output, lost []uint16) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.NACKs++
	f.NACKed += uint64(len(lost))
	if f.batch != nil && len(lost) > 1 {
		f.batch.Cork()
		defer f.batch.Uncork()
	}
	sent := 0
	for _, seq := range lost {
		src, ok := o.rw.SourceSeq(seq)
		if !ok {
			continue
		}
		n := f.cache.Get(o.rw.Source(), src, f.scratch[:])
		if n == 0 {
			continue
		}
		b := f.scratch[:n]
		if o.rw.Rewrite(b) {
			if _, err := o.w.Write(b); err == nil {
				sent++
			}
		}
	}
	f.Retransmitted += uint64(sent)
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
	sub *nats.Subscription
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
