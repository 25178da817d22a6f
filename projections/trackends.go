package projections

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetmedia/jetmedia/events"
)

// TrackEndsHeartbeat is how often the server shows the track-ends watch that it is alive. A
// watch whose consumer lived on a node that died learns it after two missed heartbeats and
// starts over on a live one: with nats.go's KV watch (5 s heartbeats, a push consumer) that
// took about 10 s, which put a lost publisher's remote viewers past 15 s.
const TrackEndsHeartbeat = time.Second

// trackEndsCreate bounds the creation of one watch's consumer, and trackEndsDelete the
// removal of one that is replaced (best effort: an unused one goes after trackEndsInactive).
const (
	trackEndsCreate   = 5 * time.Second
	trackEndsDelete   = time.Second
	trackEndsInactive = 30 * time.Second
	// trackEndsFirst bounds the tries of the first watch (the node's start waits for it).
	trackEndsFirst = time.Minute
)

// RunTrackEnds calls ended(room, track) for every track the rooms bucket drops from the
// moment it is called (unpublished, or its publisher left or was lost) until ctx ends. One
// watch per node serves every session there.
//
// The watch is a consumer of the bucket's stream that RunTrackEnds keeps itself, not nats.go's
// ordered consumer. That one, when its consumer's server dies, re-creates it under one name
// and retries for ever without telling the caller; after a SIGKILL that re-creation sometimes
// never completed (likely placed on the dead server, which JetStream does not know offline
// for a while, and asked again under that name), the watch never delivered again, and the
// remote WHEP viewers of the killed node's publisher played nothing for good (2 kills in 22
// under -race on the loaded machine; issue 13, docs/cluster.md). So any error of the watch's pulls (missed heartbeats, no responders, a
// deleted consumer), a gap in its consumer sequence or its end replaces it, at most once a
// second, by a consumer with a new name (placed anew) that starts after the last message
// seen: no end is missed and none is told twice. Each creation is bounded by trackEndsCreate
// and tried again at the next second when it fails.
//
// It returns the error of the first watch's creation, tried for up to trackEndsFirst (the
// node's start fails on it), else nil when ctx ends; started runs once that first watch is in
// place.
func RunTrackEnds(ctx context.Context, js jetstream.JetStream, bucket string, ended func(room, track string), log *slog.Logger, started func()) error {
	return runKeyWatch(ctx, js, newTrackEndsWatch(js, bucket, ended, log), started)
}

// RunRoomRecords calls written(room, seq) for every write of a room's record in the rooms
// bucket (its "<room>.room" key, which the rooms projection writes last for every event it
// folds, so seq is the bucket's sequence of the room's newest folded event) from the moment
// it is called until ctx ends. One watch per node: room SDK sessions compare it with what
// their own watch of the room delivered (a session's watch that stays behind it is dead).
// The watch is kept as RunTrackEnds keeps its own (same consumer management, same errors).
func RunRoomRecords(ctx context.Context, js jetstream.JetStream, bucket string, written func(room string, seq uint64), log *slog.Logger, started func()) error {
	w := newKeyWatch(js, bucket, "roomrecords_", "*."+keyRoom, func(key string, seq uint64, _ bool) {
		if room, ok := strings.CutSuffix(key, "."+keyRoom); ok && !strings.Contains(room, ".") {
			written(room, seq)
		}
	}, log)
	return runKeyWatch(ctx, js, w, started)
}

// Backoff of a watch over a link (RunTrackEndsOverLink) between failed tries: from
// linkedRetryMin, doubled up to linkedRetryMax. While an edge's link is down every try fails
// at once (no responders); a hub that does not answer costs trackEndsCreate a try.
const (
	linkedRetryMin = time.Second
	linkedRetryMax = 2 * time.Second
	// linkedStartGrace: an edge starts before its link is up as often as not, so the watch's
	// tries before it is first in place log at Debug for this long (then at WARN as any
	// outage's first trouble: a link that never comes up is said).
	linkedStartGrace = 30 * time.Second
)

// RunTrackEndsOverLink is RunTrackEnds for a bucket reached over a link that may be down (an
// edge's watch of the region's rooms bucket, through a JetStream handle of the region's
// domain), until ctx ends. It does not wait for the first watch: it starts from the bucket's
// last message at the first try that reaches it, and from then on each run starts after the
// last message seen, as RunTrackEnds's do, so an end written while the link was down is told
// once it heals (while the bucket still holds its marker, eventlog.RoomsMarkerTTL). Failed
// tries back off from linkedRetryMin to linkedRetryMax; the first trouble of an outage is
// logged at WARN, the rest of it at Debug, and the watch's return at Info.
func RunTrackEndsOverLink(ctx context.Context, js jetstream.JetStream, bucket string, ended func(room, track string), log *slog.Logger) {
	w := newTrackEndsWatch(js, bucket, ended, log)
	w.linked = true
	w.runLinked(ctx)
}

// runLinked keeps w running over a link until ctx ends (RunTrackEndsOverLink).
func (w *keyWatch) runLinked(ctx context.Context) {
	begun := false // the first run's start sequence is known
	w.quietUntil.Store(time.Now().Add(linkedStartGrace).UnixNano())
	var backoff time.Duration
	var next time.Time // no try before
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		if w.broken() && !time.Now().Before(next) {
			if w.run != nil {
				w.warn("bucket watch over a link replaced", "stream", w.stream, "filter", w.filter, "after_seq", w.last.Load())
				w.stop()
			}
			err := w.begin(ctx, &begun)
			if err == nil {
				err = w.start(ctx)
			}
			switch {
			case ctx.Err() != nil:
				w.stop()
				return
			case err != nil:
				backoff = min(max(2*backoff, linkedRetryMin), linkedRetryMax)
				next = time.Now().Add(backoff)
				w.warn("bucket watch over a link not in place, trying again", "stream", w.stream, "filter", w.filter, "in", backoff, "err", err)
			default:
				backoff, next = 0, time.Time{}
				w.quietUntil.Store(0)
				if w.outage.Swap(false) {
					w.log.Info("bucket watch over a link in place again", "stream", w.stream, "filter", w.filter, "after_seq", w.last.Load())
				}
			}
		}
		select {
		case <-ctx.Done():
			w.stop()
			return
		case <-tick.C:
		}
	}
}

// begin sets, once, where the first run starts: after the stream's last message.
func (w *keyWatch) begin(ctx context.Context, begun *bool) error {
	if *begun {
		return nil
	}
	cctx, cancel := context.WithTimeout(ctx, trackEndsCreate)
	defer cancel()
	stream, err := w.js.Stream(cctx, w.stream)
	if err != nil {
		return fmt.Errorf("projections: watch the %s stream's %s: %w", w.stream, w.filter, err)
	}
	w.last.Store(stream.CachedInfo().State.LastSeq)
	*begun = true
	return nil
}

// warn logs a trouble of the watch at WARN; on a watch over a link only the first of an
// outage (every try fails until the link heals, and each run's pulls fail too), the rest at
// Debug.
func (w *keyWatch) warn(msg string, args ...any) {
	if q := w.quietUntil.Load(); w.linked && q != 0 && time.Now().UnixNano() < q {
		w.log.Debug(msg, args...)
		return
	}
	if w.linked && w.outage.Swap(true) {
		w.log.Debug(msg, args...)
		return
	}
	w.log.Warn(msg, args...)
}

// runKeyWatch runs w (see RunTrackEnds) from the stream's last message until ctx ends.
func runKeyWatch(ctx context.Context, js jetstream.JetStream, w *keyWatch, started func()) error {
	log := w.log
	stream, err := js.Stream(ctx, w.stream)
	if err != nil {
		return fmt.Errorf("projections: watch the %s stream's %s: %w", w.stream, w.filter, err)
	}
	w.last.Store(stream.CachedInfo().State.LastSeq)
	if err := w.first(ctx); err != nil {
		return err
	}
	if started != nil {
		started()
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			w.stop()
			return nil
		case <-tick.C:
		}
		if !w.broken() {
			continue
		}
		log.Warn("bucket watch replaced", "stream", w.stream, "filter", w.filter, "after_seq", w.last.Load())
		w.stop()
		if err := w.start(ctx); err != nil && ctx.Err() == nil {
			log.Warn("bucket watch not re-created, trying again", "stream", w.stream, "filter", w.filter, "err", err)
		}
	}
}

// first makes the first run, trying again every second for up to trackEndsFirst: JetStream
// may not take consumers yet while a cluster's nodes start together.
func (w *keyWatch) first(ctx context.Context) error {
	deadline := time.Now().Add(trackEndsFirst)
	for {
		err := w.start(ctx)
		if err == nil || !time.Now().Before(deadline) {
			return err
		}
		w.log.Warn("bucket watch not created yet, trying again", "stream", w.stream, "filter", w.filter, "err", err)
		select {
		case <-ctx.Done():
			return fmt.Errorf("projections: watch the %s stream's %s: %w", w.stream, w.filter, ctx.Err())
		case <-time.After(time.Second):
		}
	}
}

// keyWatch is a watch of a bucket's keys (RunTrackEnds, RunRoomRecords): its current run and
// what it saw.
type keyWatch struct {
	js     jetstream.JetStream
	stream string // the bucket's stream
	prefix string // the bucket's subject prefix, "$KV.<bucket>."
	filter string // the keys watched (a subject pattern under prefix)
	name   string // the consumers' name prefix
	// changed is told of every message of a watched key: its key, stream sequence and
	// whether it is a delete or purge marker.
	changed func(key string, seq uint64, deleted bool)
	log     *slog.Logger

	last atomic.Uint64 // stream sequence of the last message seen, by any run
	run  *keyWatchRun  // nil while none runs (runKeyWatch's goroutine)

	// linked: the bucket is reached over a link that may be down (RunTrackEndsOverLink);
	// outage: a trouble of it was logged at WARN since it last ran (warn).
	linked bool
	outage atomic.Bool
	// quietUntil (Unix nanoseconds, 0: none): until then, and until it is first in place, a
	// watch over a link logs its troubles at Debug (linkedStartGrace).
	quietUntil atomic.Int64
}

// keyWatchRun is one consumer of the watch, from its creation to its replacement.
type keyWatchRun struct {
	name   string
	cc     jetstream.ConsumeContext
	closed <-chan struct{} // cc.Closed(), asked once
	// failed: the run's pulls failed or its delivery had a gap; over: the run was stopped
	// (its handler, maybe still running, tells nothing more).
	failed, over atomic.Bool
	dseq         atomic.Uint64 // consumer sequence of the last message
}

func newTrackEndsWatch(js jetstream.JetStream, bucket string, ended func(room, track string), log *slog.Logger) *keyWatch {
	return newKeyWatch(js, bucket, "trackends_", "*."+keyTrack+".*", func(key string, _ uint64, deleted bool) {
		// <room>.track.<track>; ids hold no dots.
		if parts := strings.Split(key, "."); deleted && len(parts) == 3 {
			ended(parts[0], parts[2])
		}
	}, log)
}

func newKeyWatch(js jetstream.JetStream, bucket, name, filter string, changed func(key string, seq uint64, deleted bool), log *slog.Logger) *keyWatch {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &keyWatch{js: js, stream: "KV_" + bucket, prefix: "$KV." + bucket + ".", filter: filter, name: name,
		changed: changed, log: log}
}

// start makes a run that delivers from the message after the last one seen.
func (w *keyWatch) start(ctx context.Context) error {
	r := &keyWatchRun{name: w.name + events.NewID()}
	cctx, cancel := context.WithTimeout(ctx, trackEndsCreate)
	cons, err := w.js.CreateConsumer(cctx, w.stream, jetstream.ConsumerConfig{
		Name:              r.name,
		FilterSubject:     w.prefix + w.filter,
		DeliverPolicy:     jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:       w.last.Load() + 1,
		AckPolicy:         jetstream.AckNonePolicy,
		HeadersOnly:       true,
		MemoryStorage:     true,
		Replicas:          1,
		InactiveThreshold: trackEndsInactive,
	})
	cancel()
	if err != nil {
		// A creation that timed out may stand placed on a dead server: remove it (its name is
		// never used again).
		w.remove(r.name)
		return fmt.Errorf("projections: watch the %s stream's %s: %w", w.stream, w.filter, err)
	}
	cc, err := cons.Consume(func(m jetstream.Msg) { w.handle(r, m) },
		jetstream.PullHeartbeat(TrackEndsHeartbeat), jetstream.PullExpiry(5*TrackEndsHeartbeat),
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			if !r.over.Load() {
				r.failed.Store(true)
				w.warn("bucket watch", "stream", w.stream, "consumer", r.name, "err", err)
			}
		}))
	if err != nil {
		w.remove(r.name)
		return fmt.Errorf("projections: watch the %s stream's %s: %w", w.stream, w.filter, err)
	}
	r.cc, r.closed = cc, cc.Closed()
	w.run = r
	return nil
}

// handle tells changed of m.
func (w *keyWatch) handle(r *keyWatchRun, m jetstream.Msg) {
	if r.over.Load() || r.failed.Load() {
		return // the run's replacement starts after the last message told
	}
	md, err := m.Metadata()
	if err != nil || md.Sequence.Consumer != r.dseq.Load()+1 {
		// A gap (or a message that is not the consumer's): what was skipped would be lost.
		r.failed.Store(true)
		return
	}
	r.dseq.Store(md.Sequence.Consumer)
	w.last.Store(md.Sequence.Stream)
	// A delete or purge marker (KV-Operation), or one the server writes when a marker's TTL
	// removes the key (Nats-Marker-Reason): either way the key is gone.
	h := m.Headers()
	deleted := h.Get("KV-Operation") != "" || h.Get("Nats-Marker-Reason") != ""
	w.changed(strings.TrimPrefix(m.Subject(), w.prefix), md.Sequence.Stream, deleted)
}

// broken reports whether the watch must be replaced: none runs, or the current run stopped,
// failed to pull or saw a gap.
func (w *keyWatch) broken() bool {
	r := w.run
	if r == nil || r.failed.Load() {
		return true
	}
	select {
	case <-r.closed:
		return true
	default:
		return false
	}
}

// stop ends the current run, waits (a little) for it to close and removes its consumer.
func (w *keyWatch) stop() {
	r := w.run
	if r == nil {
		return
	}
	w.run = nil
	r.over.Store(true)
	r.cc.Stop()
	select {
	case <-r.closed:
	case <-time.After(5 * time.Second):
	}
	w.remove(r.name)
}

// remove deletes a run's consumer, best effort and bounded: one that stays (its server is
// gone, or does not answer in time) is removed by the server after trackEndsInactive.
func (w *keyWatch) remove(name string) {
	ctx, cancel := context.WithTimeout(context.Background(), trackEndsDelete)
	defer cancel()
	_ = w.js.DeleteConsumer(ctx, w.stream, name)
}
