package projector

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Lead runs the projection while this node holds the lease, until ctx ends (the lease was
// lost, or the elector is stopping). An error it returns is logged and Lead is called again
// after a pause, as long as the lease holds.
type Lead func(ctx context.Context) error

// Config wires an Elector.
type Config struct {
	// KV is the projectors bucket (Declare); Key the projection's lease (KeyRooms).
	KV  jetstream.KeyValue
	Key string
	// Node is this node's name.
	Node   string
	Timing Timing
	Logger *slog.Logger
}

// Elector takes part in the election of one projection's writer: it runs Lead while this node
// holds the lease and stands by otherwise.
type Elector struct {
	cfg     Config
	process string
	log     *slog.Logger

	leading atomic.Bool
	holder  atomic.Pointer[Record] // the lease as last read or written; nil before
	// terms counts the leases taken (for tests and logs).
	terms atomic.Int64
}

// New validates cfg and returns an elector; Run starts it.
func New(cfg Config) (*Elector, error) {
	if cfg.KV == nil || cfg.Key == "" || cfg.Node == "" {
		return nil, errors.New("projector: KV, Key and Node are required")
	}
	if err := cfg.Timing.Validate(); err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Elector{cfg: cfg, process: rand.Text(), log: log.With("component", "projector", "projection", cfg.Key)}, nil
}

// Leading reports whether this node holds the lease and runs the projection.
func (e *Elector) Leading() bool { return e.leading.Load() }

// Holder is the node that held the lease when this node last read or wrote it ("" before).
func (e *Elector) Holder() string {
	if r := e.holder.Load(); r != nil {
		return r.Node
	}
	return ""
}

// Terms is how many times this elector has taken the lease.
func (e *Elector) Terms() int64 { return e.terms.Load() }

// Run stands by and leads in turn until ctx ends; then, holding the lease, it stops the
// projection and releases the lease, so a standby takes over at its next read.
func (e *Elector) Run(ctx context.Context, lead Lead) {
	for {
		rev, ok := e.standBy(ctx)
		if !ok {
			return
		}
		if rev = e.hold(ctx, rev, lead); rev != 0 {
			e.release(rev)
			return
		}
	}
}

// standBy reads the lease every half renewal until this node takes it; false when ctx ended.
func (e *Elector) standBy(ctx context.Context) (uint64, bool) {
	var w watch
	t := time.NewTicker(max(e.cfg.Timing.Renew/2, 10*time.Millisecond))
	defer t.Stop()
	for {
		rev, err := e.try(ctx, &w)
		if rev != 0 {
			return rev, true
		}
		if err != nil && ctx.Err() == nil {
			e.log.Debug("reading the projection's lease", "err", err)
		}
		select {
		case <-ctx.Done():
			return 0, false
		case <-t.C:
		}
	}
}

// try reads the lease once and takes it if nobody holds it, this node's previous process
// held it, or its holder has not renewed it for longer than its TTL. It returns the revision
// taken, 0 if none.
func (e *Elector) try(ctx context.Context, w *watch) (uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, e.cfg.Timing.TTL/2)
	defer cancel()
	start := time.Now()
	entry, err := e.cfg.KV.Get(ctx, e.cfg.Key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return e.take(ctx, 0, "free")
	}
	now := time.Now()
	if err != nil {
		w.forgive(now)
		return 0, fmt.Errorf("projector: read lease %s: %w", e.cfg.Key, err)
	}
	held := decodeRecord(entry.Value())
	e.holder.Store(&held)
	age := w.observe(now, entry.Revision())
	if now.Sub(start) > e.cfg.Timing.TTL/4 {
		w.forgive(now) // a slow read: what it returned may be as old as the wait
	}
	if held.Node == e.cfg.Node {
		return e.take(ctx, entry.Revision(), "held by this node's previous process")
	}
	if age <= max(e.cfg.Timing.TTL, held.TTL) {
		return 0, nil
	}
	return e.take(ctx, entry.Revision(), "expired: held by "+held.Node)
}

// take writes this node's record over revision rev (0: create) and returns the new revision,
// 0 when another node was faster.
func (e *Elector) take(ctx context.Context, rev uint64, why string) (uint64, error) {
	now := time.Now().UTC()
	rec := Record{Node: e.cfg.Node, Process: e.process, Since: now, Renewed: now, TTL: e.cfg.Timing.TTL}
	b, err := json.Marshal(rec)
	if err != nil {
		return 0, fmt.Errorf("projector: encode lease: %w", err)
	}
	var got uint64
	if rev == 0 {
		got, err = e.cfg.KV.Create(ctx, e.cfg.Key, b)
	} else {
		got, err = e.cfg.KV.Update(ctx, e.cfg.Key, b, rev)
	}
	if isLost(err) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("projector: take lease %s: %w", e.cfg.Key, err)
	}
	e.holder.Store(&rec)
	e.terms.Add(1)
	e.log.Info("this node writes the projection now", "lease", why, "revision", got)
	return got, nil
}

// hold runs lead while renewing the lease at revision rev. It returns the revision it holds
// when ctx ended (the caller releases it), or 0 when the lease was lost or fenced.
func (e *Elector) hold(ctx context.Context, rev uint64, lead Lead) uint64 {
	lctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	e.leading.Store(true)
	go func() {
		defer close(done)
		e.lead(lctx, lead)
	}()
	end := func() {
		stop()
		<-done
		e.leading.Store(false)
	}
	tm := e.cfg.Timing
	fence := time.NewTimer(tm.fence())
	defer fence.Stop()
	renew := time.NewTicker(tm.Renew)
	defer renew.Stop()
	since := time.Now().UTC()
	for {
		select {
		case <-ctx.Done():
			end()
			return rev
		case <-fence.C:
			e.log.Warn("projection lease not renewed in time; standing by", "fence", tm.fence())
			end()
			return 0
		case <-renew.C:
		}
		sent := time.Now()
		next, err := e.renew(ctx, rev, since)
		switch {
		case err == nil:
			rev = next
			fence.Reset(tm.fence() - time.Since(sent))
		case isLost(err):
			if cur, renewed, ok := e.stillHeld(ctx); ok {
				// A renewal that timed out was stored all the same (the server was slow, not
				// gone): the lease is still this process's, at a later revision. Standing by
				// would stop the projection only to take the lease again at once (it is this
				// node's), with the old runner still folding while the new one starts.
				rev = cur
				fence.Reset(tm.fence() - time.Since(renewed))
				continue
			}
			e.log.Warn("projection lease lost to another node; standing by", "err", err)
			end()
			return 0
		case ctx.Err() == nil:
			e.log.Warn("projection lease not renewed", "err", err)
		}
	}
}

// lead runs fn until ctx ends, again after a pause when it fails.
func (e *Elector) lead(ctx context.Context, fn Lead) {
	delay := e.cfg.Timing.Renew
	for {
		err := fn(ctx)
		if ctx.Err() != nil {
			return
		}
		e.log.Error("projection stopped; starting it again", "err", err, "retry_in", delay)
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
		delay = min(2*delay, 10*time.Second)
	}
}

// renew rewrites the lease at revision rev.
func (e *Elector) renew(ctx context.Context, rev uint64, since time.Time) (uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, e.cfg.Timing.Renew)
	defer cancel()
	rec := Record{Node: e.cfg.Node, Process: e.process, Since: since, Renewed: time.Now().UTC(), TTL: e.cfg.Timing.TTL}
	b, err := json.Marshal(rec)
	if err != nil {
		return 0, fmt.Errorf("projector: encode lease: %w", err)
	}
	next, err := e.cfg.KV.Update(ctx, e.cfg.Key, b, rev)
	if err != nil {
		return 0, fmt.Errorf("projector: renew lease %s: %w", e.cfg.Key, err)
	}
	e.holder.Store(&rec)
	return next, nil
}

// stillHeld reads the lease and reports its revision and when it was renewed (by this
// process's clock) if this process holds it.
func (e *Elector) stillHeld(ctx context.Context) (uint64, time.Time, bool) {
	ctx, cancel := context.WithTimeout(ctx, e.cfg.Timing.Renew)
	defer cancel()
	ent, err := e.cfg.KV.Get(ctx, e.cfg.Key)
	if err != nil {
		return 0, time.Time{}, false
	}
	r := decodeRecord(ent.Value())
	if r.Node != e.cfg.Node || r.Process != e.process {
		return 0, time.Time{}, false
	}
	e.holder.Store(&r)
	return ent.Revision(), r.Renewed, true
}

// release deletes the lease held at revision rev, so that a standby takes over at once.
func (e *Elector) release(rev uint64) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	err := e.cfg.KV.Delete(ctx, e.cfg.Key, jetstream.LastRevision(rev))
	if err != nil {
		// A renewal cut short by the stop may have been stored all the same: the lease is
		// still this process's, at a later revision.
		if ent, gerr := e.cfg.KV.Get(ctx, e.cfg.Key); gerr == nil {
			if r := decodeRecord(ent.Value()); r.Node == e.cfg.Node && r.Process == e.process {
				err = e.cfg.KV.Delete(ctx, e.cfg.Key, jetstream.LastRevision(ent.Revision()))
			}
		}
	}
	if err != nil {
		e.log.Warn("projection lease not released; a standby takes over when it expires", "err", err)
	}
}
