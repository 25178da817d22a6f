// Package loggen makes synthetic room histories for tests and benchmarks: valid, random but
// reproducible event sequences (peers join, publish, subscribe, unpublish and leave), and a
// fast writer that stores them hash-chained on the EVENTS stream exactly as the Appender would.
package loggen

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetmedia/jetmedia/events"
	"github.com/jetmedia/jetmedia/pipeline/eventlog"
)

// Gen generates one room's events. The zero value is not usable; use New.
type Gen struct {
	room string
	rnd  *rand.Rand
	now  time.Time
	step time.Duration
	i    int

	peers  []string
	tracks map[string][]string // peer -> tracks
	subs   map[string]string   // peer.track -> publisher
	// MaxPeers bounds the room's size (default 12).
	MaxPeers int
}

// New returns a generator for room whose events start at start and are spaced by a random
// gap in [0, 2*step) (ties happen), reproducible for a seed.
func New(room string, seed uint64, start time.Time, step time.Duration) *Gen {
	return &Gen{room: room, rnd: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), now: start.UTC(), step: step,
		tracks: map[string][]string{}, subs: map[string]string{}, MaxPeers: 12}
}

// Next returns the room's next event; the first is room.created.
func (g *Gen) Next() events.Envelope {
	defer func() { g.i++ }()
	if g.i > 0 && g.step > 0 {
		g.now = g.now.Add(time.Duration(g.rnd.Int64N(int64(2 * g.step))))
	}
	if g.i == 0 {
		return g.envelope("system", events.RoomCreated{Node: "gen"})
	}
	for {
		switch op := g.rnd.IntN(10); {
		case op < 2 && len(g.peers) < g.MaxPeers || len(g.peers) == 0:
			p := fmt.Sprintf("p%d", g.i)
			g.peers = append(g.peers, p)
			role := "viewer"
			if g.rnd.IntN(2) == 0 {
				role = "publisher"
			}
			return g.envelope(p, events.PeerJoined{Peer: p, Transport: events.TransportWHIP, Role: role, Node: "gen",
				RemoteAddr: "10.0.0.1:5000", UserAgent: "loggen"})
		case op < 3:
			p := g.pick()
			g.peers = slices.DeleteFunc(g.peers, func(x string) bool { return x == p })
			delete(g.tracks, p)
			for k, pub := range g.subs {
				if pub == p || strings.HasPrefix(k, p+".") {
					delete(g.subs, k)
				}
			}
			return g.envelope(p, events.NewPeerLeft(p, "closed"))
		case op < 5:
			p := g.pick()
			if len(g.tracks[p]) >= 2 {
				continue
			}
			t := fmt.Sprintf("t%d", g.i)
			g.tracks[p] = append(g.tracks[p], t)
			return g.envelope(p, events.TrackPublished{Peer: p, Track: t, Kind: "video", Codec: "video/VP8",
				ClockRate: 90000, Layers: []string{"0"}})
		case op < 6:
			p := g.pick()
			if len(g.tracks[p]) == 0 {
				continue
			}
			t := g.tracks[p][0]
			g.tracks[p] = g.tracks[p][1:]
			for k := range g.subs {
				if strings.HasSuffix(k, "."+t) {
					delete(g.subs, k)
				}
			}
			return g.envelope(p, events.TrackUnpublished{Peer: p, Track: t})
		case op < 9:
			viewer, pub := g.pick(), g.pick()
			if viewer == pub || len(g.tracks[pub]) == 0 {
				continue
			}
			t := g.tracks[pub][g.rnd.IntN(len(g.tracks[pub]))]
			if _, ok := g.subs[viewer+"."+t]; ok {
				continue
			}
			g.subs[viewer+"."+t] = pub
			return g.envelope(viewer, events.SubscriptionStarted{Peer: viewer, Track: t, Publisher: pub})
		default:
			for _, k := range slices.Sorted(maps.Keys(g.subs)) {
				p, t, _ := strings.Cut(k, ".")
				delete(g.subs, k)
				return g.envelope(p, events.SubscriptionEnded{Peer: p, Track: t})
			}
		}
	}
}

func (g *Gen) pick() string { return g.peers[g.rnd.IntN(len(g.peers))] }

func (g *Gen) envelope(actor string, p events.Payload) events.Envelope {
	e, err := events.New(events.Meta{Room: g.room, Actor: actor, Node: "gen", Time: g.now}, p)
	if err != nil {
		panic(err) // a bug in the generator
	}
	if p.EventType() == events.TypeRoomCreated {
		e.ID = "room-created-" + g.room
	}
	return e
}

// Events returns the first n events of a generator.
func Events(room string, n int, seed uint64, start time.Time, step time.Duration) []events.Envelope {
	g := New(room, seed, start, step)
	out := make([]events.Envelope, n)
	for i := range out {
		out[i] = g.Next()
	}
	return out
}

// Write stores n events from next on the EVENTS stream, chained (prevhash) as the Appender
// chains them, with asynchronous publishes: far faster than the Appender, for filling big logs.
// The room must have no events yet, and nothing else may write to it meanwhile.
func Write(ctx context.Context, js jetstream.JetStream, n int, next func() events.Envelope) error {
	prev := ""
	const window = 2048
	pending := make([]jetstream.PubAckFuture, 0, window)
	flush := func() error {
		for _, f := range pending {
			select {
			case <-f.Ok():
			case err := <-f.Err():
				return fmt.Errorf("loggen: publish: %w", err)
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		pending = pending[:0]
		return nil
	}
	for i := range n {
		e := next()
		e.PrevHash = prev
		raw, err := events.Encode(e)
		if err != nil {
			return err
		}
		prev = events.Hash(raw)
		f, err := js.PublishAsync(eventlog.EventSubject(e.Room, events.Kind(e.Type)), raw)
		if err != nil {
			return fmt.Errorf("loggen: publish event %d: %w", i, err)
		}
		if pending = append(pending, f); len(pending) == window {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	return flush()
}
