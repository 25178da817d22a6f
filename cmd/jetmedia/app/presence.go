package app

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"runtime/metrics"
	"time"

	"github.com/jetmedia/jetmedia/pipeline/eventlog"
	"github.com/jetmedia/jetmedia/pipeline/rtc"
	"github.com/jetmedia/jetmedia/projections/presence"
)

// startPresence announces the node in the nodes bucket, then, in the background, ends the
// sessions the log still shows on this node from a previous process (killed, crashed), once
// the rooms projection shows every event stored before this start. The lease goes first, so
// that no survivor takes this node for lost while it cleans up. The HTTP port does not wait
// for that: on a long log the projection may take minutes to catch up, and the sessions this
// process opens meanwhile are safe from the clean-up (it ends only sessions that joined before
// this process started).
func (n *Node) startPresence(ctx, runCtx context.Context) error {
	meter := &loadMeter{}
	describe := func() presence.Lease {
		role := presence.RoleFull
		if !n.cfg.JetStream {
			role = presence.RoleMedia
		}
		httpURL, _ := n.httpURL.Load().(string)
		return presence.Lease{Name: n.cfg.Name, Zone: n.cfg.Zone, Role: role, HTTP: httpURL, MaxSessions: n.cfg.MaxSessions,
			UDP: n.edge.UDPAddr().String(), NATS: n.srv.ClientURL(), Started: n.started,
			Load: meter.read(time.Now(), n.sessions.Len(""), n.hub.Stats().ForwardedBytes)}
	}
	p, err := presence.Start(ctx, presence.Config{Nodes: n.nodes, Rooms: n.rooms, Appender: n.appender,
		Describe: describe, Timing: n.cfg.Presence, Logger: n.log,
		// A lapse of the lease has the node look, for a while, for sessions a survivor ended.
		Lapsed: func(now time.Time) { n.selfEnd.Suspect(now, now.Add(n.cfg.Presence.Recheck)) }})
	if err != nil {
		return err
	}
	n.presence = p
	head, err := n.logHead(ctx)
	if err != nil {
		return err
	}
	n.wg.Go(func() { n.endOwnStale(runCtx, p, head) })
	n.wg.Go(func() { n.selfEnd.Run(runCtx, n.cfg.Presence.Renew) })
	if n.cfg.EdgeLostAfter > 0 && n.cfg.JetStream && !n.srv.Edge() {
		lost := &presence.EdgeLost{Region: n.js, Node: n.cfg.Name, After: n.cfg.EdgeLostAfter, Designated: p.Designated, Logger: n.log}
		n.wg.Go(func() { lost.Run(runCtx) })
	}
	return nil
}

// localSessions are the registry's sessions as presence.SelfEnd asks for them.
type localSessions struct{ reg *rtc.Registry }

func (l localSessions) Joined() []presence.LocalSession {
	joined := l.reg.Joined()
	out := make([]presence.LocalSession, len(joined))
	for i, j := range joined {
		out[i] = presence.LocalSession{ID: j.ID, Room: j.Room, Transport: j.Transport, JoinSeq: j.Seq}
	}
	return out
}

func (l localSessions) EndedInLog(id string) bool { return l.reg.EndedInLog(id) }

// endOwnStale ends this node's sessions of a previous process once the rooms projection has
// applied the log up to head (the log's last sequence when this process started).
func (n *Node) endOwnStale(ctx context.Context, p *presence.Presence, head uint64) {
	if err := n.waitProjectedTo(ctx, head); err != nil {
		return // the node is stopping
	}
	ended, err := p.EndOwn(ctx)
	if err != nil {
		if ctx.Err() == nil {
			n.log.Error("ending this node's stale sessions", "err", err)
		}
		return
	}
	if ended > 0 {
		n.log.Warn("ended sessions a previous process of this node left in the log", "sessions", ended)
	}
}

// logHead is the EVENTS stream's last sequence.
func (n *Node) logHead(ctx context.Context) (uint64, error) {
	s, err := n.js.Stream(ctx, eventlog.StreamEvents)
	if err != nil {
		return 0, fmt.Errorf("stream %s: %w", eventlog.StreamEvents, err)
	}
	return s.CachedInfo().State.LastSeq, nil
}

// waitProjectedTo waits until the rooms projection has applied every event up to seq (its
// consumer's ack floor reached it), or has nothing left to apply.
func (n *Node) waitProjectedTo(ctx context.Context, seq uint64) error {
	for {
		c, err := n.js.Consumer(ctx, eventlog.StreamEvents, ProjectionDurable)
		if err == nil {
			info := c.CachedInfo()
			if info.AckFloor.Stream >= seq || info.NumPending+uint64(info.NumAckPending) == 0 {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// loadMeter turns counters into rates between two lease renewals. Only the renewing goroutine
// calls read.
type loadMeter struct {
	at        time.Time
	busy      float64 // CPU seconds the process kept busy, Go's estimate
	egress    uint64  // bytes forwarded to viewers
	lastCPU   float64
	lastBits  uint64
	samples   [2]metrics.Sample
	initiated bool
}

func (m *loadMeter) read(now time.Time, sessions int, egress uint64) presence.Load {
	if !m.initiated {
		m.samples[0].Name = "/cpu/classes/total:cpu-seconds"
		m.samples[1].Name = "/cpu/classes/idle:cpu-seconds"
		m.initiated = true
	}
	metrics.Read(m.samples[:])
	busy := 0.0
	if m.samples[0].Value.Kind() == metrics.KindFloat64 && m.samples[1].Value.Kind() == metrics.KindFloat64 {
		busy = m.samples[0].Value.Float64() - m.samples[1].Value.Float64()
	}
	if !m.at.IsZero() {
		if dt := now.Sub(m.at).Seconds(); dt > 0 {
			m.lastCPU = max(busy-m.busy, 0) / dt
			if egress >= m.egress {
				m.lastBits = uint64(float64(egress-m.egress) * 8 / dt)
			}
		}
	}
	m.at, m.busy, m.egress = now, busy, egress
	return presence.Load{Sessions: sessions, CPU: m.lastCPU, EgressBitrate: m.lastBits}
}

// selfLease is this node as placement sees it now: its zone, sessions and limit.
func (n *Node) selfLease() presence.Lease {
	return presence.Lease{Name: n.cfg.Name, Zone: n.cfg.Zone, MaxSessions: n.cfg.MaxSessions,
		Load: presence.Load{Sessions: n.sessions.Len("")}}
}

// placer sends new WHIP and WHEP sessions to the node that should serve them (or refuses them
// when every node is full), from the leases presence last read.
func (n *Node) placer(next http.Handler) http.Handler {
	return &presence.Placer{Self: n.selfLease, Leases: n.presence.Leases, Redirect: n.cfg.Placement, Next: next}
}

// placeRTC is the same decision for a join on the room protocol's WebSocket (signal.Config.Place).
func (n *Node) placeRTC(r *http.Request) (*url.URL, error) {
	return presence.Place(n.selfLease(), n.cfg.Placement, r.URL, n.presence.Leases())
}
