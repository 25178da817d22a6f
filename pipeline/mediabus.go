package pipeline

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/nats-io/nats.go"
)

// MediaBus carries RTP and RTCP feedback on core NATS subjects (never JetStream): best effort,
// routed by interest, so a packet crosses to another server once whatever the number of
// subscribers there.
//
// A bus made by NewLocalMediaBus also hands its own RTP packets to its own subscribers
// directly, on the sender's goroutine: the RTP connection does not echo, so NATS delivers
// only other nodes' packets to this node and this node's packets only to other nodes. Media
// still rides the subjects between nodes; inside a node the packet skips the round trip
// through the server and nats.go's allocation of a message and a payload copy for every
// delivery.
type MediaBus struct {
	nc  *nats.Conn // feedback, and RTP unless rtp is set apart
	rtp *nats.Conn // RTP

	local bool // rtp does not echo: deliver this node's RTP to this node's subscribers here
	mu    sync.RWMutex
	subs  map[string][]*localSub // by subject; replaced, never changed in place

	sent     atomic.Uint64
	received atomic.Uint64
}

// localSub is the in-node half of a subscription: its NATS half's Unsubscribe ends both.
type localSub struct {
	sub *nats.Subscription
	fn  func(data []byte)
}

// MediaStats counts the RTP packets this node put on and took off media subjects.
type MediaStats struct {
	Sent, Received uint64
}

// Stats returns the packet counters.
func (b *MediaBus) Stats() MediaStats {
	return MediaStats{Sent: b.sent.Load(), Received: b.received.Load()}
}

// NewMediaBus uses nc for the media plane. Give it a connection separate from the control
// plane's so that bursts of media do not delay event appends.
func NewMediaBus(nc *nats.Conn) *MediaBus { return &MediaBus{nc: nc, rtp: nc} }

// ErrEcho is returned by NewLocalMediaBus for an RTP connection that echoes.
var ErrEcho = errors.New("pipeline: the RTP connection must be made with nats.NoEcho")

// NewLocalMediaBus sends feedback on nc and RTP on rtp, a connection made with nats.NoEcho
// and used for nothing else, delivering the node's own RTP to the node's own subscribers
// without NATS.
func NewLocalMediaBus(nc, rtp *nats.Conn) (*MediaBus, error) {
	if !rtp.Opts.NoEcho {
		return nil, ErrEcho
	}
	return &MediaBus{nc: nc, rtp: rtp, local: true, subs: map[string][]*localSub{}}, nil
}

// TrackSender publishes the packets of one track layer. The subject is computed once; Send does
// not allocate.
type TrackSender struct {
	bus     *MediaBus
	subject string
}

// Sender returns a sender for md.<room>.<track>.<layer>.
func (b *MediaBus) Sender(room, track, layer string) *TrackSender {
	return &TrackSender{bus: b, subject: MediaSubject(room, track, layer)}
}

// Send publishes one RTP packet (other nodes get it from NATS) and, on a local bus, then runs
// this node's subscribers of the track. The bytes are not kept after it returns.
func (s *TrackSender) Send(pkt []byte) error {
	err := s.bus.rtp.Publish(s.subject, pkt)
	if err == nil {
		s.bus.sent.Add(1)
	}
	if s.bus.local { // this node's viewers play on while NATS is unreachable
		s.bus.deliver(s.subject, pkt)
	}
	if err != nil {
		return fmt.Errorf("pipeline: media publish %s: %w", s.subject, err)
	}
	return nil
}

// deliver runs subject's local subscribers on data.
func (b *MediaBus) deliver(subject string, data []byte) {
	b.mu.RLock()
	subs := b.subs[subject]
	b.mu.RUnlock()
	stale := false
	for _, s := range subs {
		if !s.sub.IsValid() {
			stale = true
			continue
		}
		b.received.Add(1)
		s.fn(data)
	}
	if stale {
		b.prune(subject)
	}
}

// prune drops subject's unsubscribed local subscribers.
func (b *MediaBus) prune(subject string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	live := slices.DeleteFunc(slices.Clone(b.subs[subject]), func(s *localSub) bool { return !s.sub.IsValid() })
	if len(live) == 0 {
		delete(b.subs, subject)
		return
	}
	b.subs[subject] = live
}

// Subscribe delivers the packets of one track layer to fn, in order: other nodes' on the RTP
// connection's delivery goroutine, this node's (on a local bus) on the sender's. fn must not
// keep data after it returns. Unsubscribing the returned subscription ends both.
func (b *MediaBus) Subscribe(room, track, layer string, fn func(data []byte)) (*nats.Subscription, error) {
	subj := MediaSubject(room, track, layer)
	sub, err := b.rtp.Subscribe(subj, func(m *nats.Msg) {
		b.received.Add(1)
		fn(m.Data)
	})
	if err != nil {
		return nil, fmt.Errorf("pipeline: media subscribe %s: %w", subj, err)
	}
	// Media is better dropped than queued without bound behind a slow consumer.
	if err := sub.SetPendingLimits(4096, 16<<20); err != nil {
		_ = sub.Unsubscribe()
		return nil, fmt.Errorf("pipeline: media subscribe %s: %w", subj, err)
	}
	if b.local {
		b.mu.Lock()
		// A new slice: deliver may be reading the old one.
		b.subs[subj] = append(slices.Clip(b.subs[subj]), &localSub{sub: sub, fn: fn})
		b.mu.Unlock()
		b.prune(subj)
	}
	return sub, nil
}

// SendFeedback publishes a marshalled RTCP packet toward the publisher of a track.
func (b *MediaBus) SendFeedback(room, track string, rtcp []byte) error {
	subj := FeedbackSubject(room, track)
	if err := b.nc.Publish(subj, rtcp); err != nil {
		return fmt.Errorf("pipeline: feedback publish %s: %w", subj, err)
	}
	return nil
}

// SubscribeFeedback delivers RTCP feedback for one track to fn.
func (b *MediaBus) SubscribeFeedback(room, track string, fn func(data []byte)) (*nats.Subscription, error) {
	subj := FeedbackSubject(room, track)
	sub, err := b.nc.Subscribe(subj, func(m *nats.Msg) { fn(m.Data) })
	if err != nil {
		return nil, fmt.Errorf("pipeline: feedback subscribe %s: %w", subj, err)
	}
	return sub, nil
}

// Flush waits until the server has processed everything published so far (subscriptions
// included), so interest is in place before media is expected.
func (b *MediaBus) Flush() error {
	if b.rtp != b.nc {
		if err := b.rtp.Flush(); err != nil {
			return err
		}
	}
	return b.nc.Flush()
}
