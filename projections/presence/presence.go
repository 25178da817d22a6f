package presence

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetmedia/jetmedia/events"
	"github.com/jetmedia/jetmedia/projections"
)

// Appender stores events of one room in order (eventlog.Appender).
type Appender interface {
	Append(ctx context.Context, evs ...events.Envelope) (uint64, error)
}

// Timing sets the lease's rhythm.
type Timing struct {
	// Renew is how often a node rewrites its lease and reads everyone else's (default 2 s).
	Renew time.Duration
	// TTL is how long a lease holds without renewal (default 8 s): a node that does not renew
	// for this long is lost, and its sessions are ended. Kill to ghosts ended is at most
	// TTL + 2 × Renew plus an append.
	TTL time.Duration
	// Recheck is how long after ending a lost node's sessions the survivor looks once more
	// (default 30 s), for sessions the rooms projection had not shown yet.
	Recheck time.Duration
}

// DefaultTiming returns the documented defaults.
func DefaultTiming() Timing {
	return Timing{Renew: 2 * time.Second, TTL: 8 * time.Second, Recheck: 30 * time.Second}
}

// Validate reports a timing that cannot work.
func (t Timing) Validate() error {
	if t.Renew <= 0 || t.Recheck <= 0 {
		return fmt.Errorf("presence: renew %v and recheck %v must be positive", t.Renew, t.Recheck)
	}
	if t.TTL < 2*t.Renew {
		return fmt.Errorf("presence: lease TTL %v is under two renewals (%v each)", t.TTL, t.Renew)
	}
	return nil
}

// Config wires a Presence.
type Config struct {
	// Nodes is the nodes bucket (Declare), Rooms the rooms projection bucket.
	Nodes, Rooms jetstream.KeyValue
	Appender     Appender
	// Describe returns this node's lease as of now; Renewed and TTL are filled in.
	Describe func() Lease
	Timing   Timing
	Logger   *slog.Logger
	// Lapsed, when set, is told that this node may have been taken for lost (SelfEnd.Suspect):
	// a renewal came, or is still missing, later than TTL less one renewal period after the
	// start of the last renewal the bucket stored. It is called on the renewing goroutine at
	// each renewal while that holds, with the time of the call, and must not block.
	Lapsed func(now time.Time)
}

// Presence holds this node's lease and ends the sessions of nodes whose lease expired.
type Presence struct {
	cfg     Config
	self    string
	started time.Time
	log     *slog.Logger

	// Owned by the checking goroutine.
	table  *Table
	reaped map[string]reaped
	// refresh asks the renewing goroutine to renew the lease now (what Describe returns changed).
	refresh chan struct{}
	// stalled: a renewal of this node's lease failed or was slow since the last check (set by
	// the renewing goroutine, taken by the checking one).
	stalled atomic.Bool
	// renewed is when the last renewal that was stored started (owned by the renewing
	// goroutine); lapsing: the last renewal found the lease lapsed.
	renewed time.Time
	lapsing bool
	// ownChecked: the first check after start looked again for this node's stale sessions.
	ownChecked bool
	// leases are every lease as the last check read them (for placement).
	leases atomic.Pointer[[]Observed]

	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once
}

// reaped is how far the sessions of a lost node (at one lease revision) have been ended.
type reaped struct {
	rev    uint64
	at     time.Time
	passes int
}

// Start writes this node's first lease and keeps it renewed until Close, ending the sessions
// of nodes whose lease expires meanwhile.
func Start(ctx context.Context, cfg Config) (*Presence, error) {
	if cfg.Nodes == nil || cfg.Rooms == nil || cfg.Appender == nil || cfg.Describe == nil {
		return nil, errors.New("presence: Nodes, Rooms, Appender and Describe are required")
	}
	if err := cfg.Timing.Validate(); err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	p := &Presence{cfg: cfg, self: cfg.Describe().Name, started: time.Now(), log: log.With("component", "presence"),
		table: NewTable(), reaped: map[string]reaped{}, refresh: make(chan struct{}, 1)}
	p.renewed = time.Now()
	if err := p.renew(ctx); err != nil {
		return nil, err
	}
	runCtx, cancel := context.WithCancel(context.Background())
	p.cancel = cancel
	p.wg.Add(2)
	go func() {
		defer p.wg.Done()
		p.renewLoop(runCtx)
	}()
	go func() {
		defer p.wg.Done()
		p.checkLoop(runCtx)
	}()
	return p, nil
}

// renewLoop renews the lease on its own goroutine, so that a long check (ending a lost
// node's sessions in many rooms) never lets this node's own lease lapse.
func (p *Presence) renewLoop(ctx context.Context) {
	t := time.NewTicker(p.cfg.Timing.Renew)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-p.refresh:
			p.renewLogged(ctx)
		case <-t.C:
			p.renewLogged(ctx)
		}
	}
}

// checkLoop reads the leases every renewal period and ends what is to be ended.
func (p *Presence) checkLoop(ctx context.Context) {
	t := time.NewTicker(p.cfg.Timing.Renew)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			p.checkOwn(ctx)
			if err := p.check(ctx); err != nil && ctx.Err() == nil {
				p.log.Warn("checking other nodes' leases", "err", err)
			}
		}
	}
}

// renewLogged renews the lease and notes a renewal that failed or took longer than a quarter
// of the TTL: the bucket stalled. It tells Lapsed when the lease may have lapsed in the eyes
// of the others: they age a lease from when they saw it written, which is after the renewal
// started, so a node whose stored renewals start less than TTL apart cannot be taken for lost;
// one renewal period of margin covers the moment a survivor reads the bucket.
func (p *Presence) renewLogged(ctx context.Context) {
	start := time.Now()
	err := p.renew(ctx)
	now := time.Now()
	if err != nil || now.Sub(start) > p.cfg.Timing.TTL/4 {
		p.stalled.Store(true)
	}
	if err != nil && ctx.Err() == nil {
		p.log.Warn("lease not renewed", "err", err)
	}
	if gap := now.Sub(p.renewed); gap > p.cfg.Timing.TTL-p.cfg.Timing.Renew && ctx.Err() == nil {
		if !p.lapsing {
			p.log.Warn("this node's lease went unrenewed for longer than the others wait: they may have taken it for lost and ended its sessions in the log; checking",
				"unrenewed", gap.Round(time.Millisecond), "ttl", p.cfg.Timing.TTL)
		}
		p.lapsing = true
		if p.cfg.Lapsed != nil {
			p.cfg.Lapsed(now)
		}
	} else {
		p.lapsing = false
	}
	if err == nil {
		p.renewed = start
	}
}

// Leases are every node's lease as this node last read them (each renewal), aged as it
// reckoned then; nil before the first read.
func (p *Presence) Leases() []Observed {
	if l := p.leases.Load(); l != nil {
		return *l
	}
	return nil
}

// Refresh renews the lease soon, out of turn: what Describe returns has changed (the HTTP
// port opened). It does not block.
func (p *Presence) Refresh() {
	select {
	case p.refresh <- struct{}{}:
	default:
	}
}

// renew writes this node's lease.
func (p *Presence) renew(ctx context.Context) error {
	l := p.cfg.Describe()
	l.Renewed, l.TTL = time.Now().UTC(), p.cfg.Timing.TTL
	b, err := json.Marshal(l)
	if err != nil {
		return fmt.Errorf("presence: encode lease: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, p.cfg.Timing.TTL/2)
	defer cancel()
	if _, err := p.cfg.Nodes.Put(ctx, p.self, b); err != nil {
		return fmt.Errorf("presence: renew lease of %s: %w", p.self, err)
	}
	return nil
}

// check reads every lease and, if this node is the one to do it, ends the sessions of the
// nodes whose lease expired.
func (p *Presence) check(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, p.cfg.Timing.TTL)
	defer cancel()
	start := time.Now()
	entries, err := ReadAll(ctx, p.cfg.Nodes)
	if err != nil {
		p.stalled.Store(true)
		return err
	}
	now := time.Now()
	if now.Sub(start) > p.cfg.Timing.TTL/4 {
		p.stalled.Store(true) // a slow read: what it returns may be as old as the wait
	}
	leases, err := p.table.Observe(now, entries)
	if err != nil {
		p.log.Warn("unreadable lease", "err", err)
	}
	p.leases.Store(&leases)
	if p.stalled.Swap(false) {
		// This node could not renew either: judge nobody by the silence just past.
		p.table.Forgive(now)
		return nil
	}
	lost := p.due(now, leases)
	if len(lost) == 0 || !p.designated(leases) {
		return nil
	}
	ghost := func(_ projections.Room, node string) bool { _, ok := lost[node]; return ok }
	detail := func(node string) string { return "node " + node + " lost: lease expired" }
	n, err := End(ctx, p.cfg.Rooms, p.cfg.Appender, ghost, p.ending(detail))
	if err != nil {
		return err
	}
	for node, rev := range lost {
		r := p.reaped[node]
		if r.rev != rev {
			r = reaped{rev: rev}
		}
		r.at, r.passes = now, r.passes+1
		p.reaped[node] = r
		p.log.Info("ended the sessions of a lost node", "lost", node, "sessions", n, "pass", r.passes)
	}
	return nil
}

// due returns the lost nodes (name → lease revision) whose sessions are to be ended now: once
// when the lease expires, and once more Recheck later.
func (p *Presence) due(now time.Time, leases []Observed) map[string]uint64 {
	out := map[string]uint64{}
	for _, l := range leases {
		if l.Name == p.self || !l.Expired() {
			continue
		}
		r, ok := p.reaped[l.Name]
		switch {
		case !ok || r.rev != l.Revision:
			out[l.Name] = l.Revision
		case r.passes == 1 && now.Sub(r.at) >= p.cfg.Timing.Recheck:
			out[l.Name] = l.Revision
		}
	}
	return out
}

// designated reports whether this node is the live node with the smallest name: the one that
// ends lost nodes' sessions. Should it die too, the next one takes over when its lease
// expires; should two disagree for a moment, the events' ids make the second write a no-op.
func (p *Presence) designated(leases []Observed) bool {
	for _, l := range leases { // sorted by name
		if l.Name == p.self {
			return true
		}
		if !l.Expired() {
			return false
		}
	}
	return true
}

func (p *Presence) ending(detail func(string) string) func(node string) Ending {
	return func(node string) Ending { return Ending{By: p.self, Detail: detail(node), Time: time.Now()} }
}

// EndOwn ends the sessions the log still shows on this node that joined before this process
// started: a previous process's, which died without ending them.
func (p *Presence) EndOwn(ctx context.Context) (int, error) {
	return p.endOwn(ctx, func(projections.Room) bool { return true })
}

func (p *Presence) endOwn(ctx context.Context, room func(projections.Room) bool) (int, error) {
	self := func(r projections.Room, node string) bool { return node == p.self && room(r) }
	return End(ctx, p.cfg.Rooms, p.cfg.Appender, self, func(string) Ending {
		return Ending{By: p.self, Detail: "node " + p.self + " restarted", Time: time.Now(), Before: p.started}
	})
}

// checkOwn looks once more, at the first check after start, for stale sessions the rooms
// projection showed late (the dead process's events redelivered after start), in the rooms
// nothing has happened in since this process started: where something has, this node wrote
// it or saw it, and its sessions there are its own.
func (p *Presence) checkOwn(ctx context.Context) {
	if p.ownChecked {
		return
	}
	p.ownChecked = true
	quiet := func(r projections.Room) bool { return r.LastEvent.Before(p.started) }
	if n, err := p.endOwn(ctx, quiet); err != nil && ctx.Err() == nil {
		p.log.Warn("ending this node's stale sessions", "err", err)
	} else if n > 0 {
		p.log.Warn("ended sessions a previous process of this node left in the log", "sessions", n)
	}
}

// End ends, in the log, every session of the rooms bucket whose node ghost says is gone from
// the room, and returns how many it ended.
func End(ctx context.Context, rooms jetstream.KeyValue, app Appender, ghost func(r projections.Room, node string) bool, ending func(node string) Ending) (int, error) {
	all, err := projections.Rooms(ctx, rooms)
	if err != nil {
		return 0, err
	}
	n := 0
	var errs []error
	for _, r := range all {
		var evs []events.Envelope
		for _, node := range ghostNodes(r, ghost) {
			more, err := EndSessions(r, node, ending(node))
			if err != nil {
				return n, err
			}
			evs = append(evs, more...)
		}
		if len(evs) == 0 {
			continue
		}
		if _, err := app.Append(ctx, evs...); err != nil {
			errs = append(errs, fmt.Errorf("presence: end sessions in room %s: %w", r.Room, err))
			continue
		}
		n += countLeft(evs)
	}
	return n, errors.Join(errs...)
}

// ghostNodes are the nodes of r's peers that ghost says are gone, sorted.
func ghostNodes(r projections.Room, ghost func(r projections.Room, node string) bool) []string {
	nodes := map[string]bool{}
	for _, peer := range r.Peers {
		if ghost(r, peer.Node) {
			nodes[peer.Node] = true
		}
	}
	return slices.Sorted(maps.Keys(nodes))
}

// countLeft counts the sessions evs end (their peer.left).
func countLeft(evs []events.Envelope) int {
	n := 0
	for _, e := range evs {
		if e.Type == events.TypePeerLeft {
			n++
		}
	}
	return n
}

// Close stops renewing and deletes the lease: a node that stops cleanly has ended its
// sessions itself. It is idempotent and waits for the renewal goroutine.
func (p *Presence) Close() error {
	var err error
	p.closeOnce.Do(func() {
		p.cancel()
		p.wg.Wait()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if e := p.cfg.Nodes.Delete(ctx, p.self); e != nil {
			err = fmt.Errorf("presence: delete lease of %s: %w", p.self, e)
		}
	})
	return err
}

// Designated reports whether this node, by the leases its last check read, is the one to act
// for the region (the live node with the smallest name): false before the first check.
func (p *Presence) Designated() bool {
	leases := p.Leases()
	return leases != nil && p.designated(leases)
}
