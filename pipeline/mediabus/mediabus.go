package mediabus

import (
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"weak"

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

	local    bool                      // rtp does not echo: deliver this node's RTP to this node's subscribers here
	interest func(subject string) bool // whether anyone beyond this node's own delivery wants it
	mu       sync.RWMutex
	subs     map[string][]*localSub               // by subject; replaced, never changed in place
	senders  map[string]weak.Pointer[TrackSender] // this node's publishers, by subject

	sent     atomic.Uint64
	received atomic.Uint64
	// Repairs of loss between nodes (repair.go).
	repairsAsked, repairRequests, repaired atomic.Uint64
}

// localSub is the in-node half of a subscription.
type localSub struct {
	sub *MediaSubscription
	fn  func(data []byte)
}

// MediaSubscription is a subscription to one track layer's RTP: through NATS for other nodes'
// packets and, on a local bus, directly for this node's own.
type MediaSubscription struct {
	nats *nats.Subscription // nil for a track this node publishes: no NATS interest needed
	// repair receives the packets the publisher's node resends (repair.go); nil with nats.
	repair *nats.Subscription
	ended  atomic.Bool
	// bus and subject find the local half (on a local bus) to drop it.
	bus     *MediaBus
	subject string
}

// Unsubscribe ends the subscription. Its local half is dropped at once: its fn (a fan-out
// with its packet cache) must not stay reachable from the bus until the next packet of a
// track that may never send again.
func (s *MediaSubscription) Unsubscribe() error {
	s.ended.Store(true)
	if s.bus != nil && s.bus.local {
		s.bus.prune(s.subject)
	}
	if s.nats == nil {
		return nil
	}
	if s.repair != nil {
		_ = s.repair.Unsubscribe()
	}
	return s.nats.Unsubscribe()
}

// Dropped is the number of other nodes' packets dropped because the subscriber fell behind.
func (s *MediaSubscription) Dropped() (int, error) {
	if s.nats == nil {
		return 0, nil
	}
	return s.nats.Dropped()
}

// MediaStats counts the RTP packets this node's publishers handed to the bus (Sent: put on
// their media subjects, published on NATS when anyone beyond this node wants them) and those
// delivered to this node's subscribers (Received, once per subscription, repairs included).
// RepairsAsked counts the packets this node found missing from other nodes' tracks and asked
// their nodes for; RepairRequests the requests this node got for its own tracks, Repaired the
// packets it resent for them.
type MediaStats struct {
	Sent, Received                         uint64
	RepairsAsked, RepairRequests, Repaired uint64
}

// Stats returns the packet counters.
func (b *MediaBus) Stats() MediaStats {
	return MediaStats{Sent: b.sent.Load(), Received: b.received.Load(), RepairsAsked: b.repairsAsked.Load(),
		RepairRequests: b.repairRequests.Load(), Repaired: b.repaired.Load()}
}

// NewMediaBus uses nc for the media plane. Give it a connection separate from the control
// plane's so that bursts of media do not delay event appends.
func NewMediaBus(nc *nats.Conn) *MediaBus { return &MediaBus{nc: nc, rtp: nc} }

// ErrEcho is returned by NewLocalMediaBus for an RTP connection that echoes.
var ErrEcho = errors.New("pipeline: the RTP connection must be made with nats.NoEcho")

// NewLocalMediaBus sends feedback on nc and RTP on rtp, a connection made with nats.NoEcho
// and used for nothing else, delivering the node's own RTP to the node's own subscribers
// without NATS. interest (natsnode.Server.Interest), when given, tells whether any NATS subscription
// wants a subject: a packet nobody else wants is not published at all, which spares the
// server's work and its allocation per message.
func NewLocalMediaBus(nc, rtp *nats.Conn, interest func(subject string) bool) (*MediaBus, error) {
	if !rtp.Opts.NoEcho {
		return nil, ErrEcho
	}
	return &MediaBus{nc: nc, rtp: rtp, local: true, interest: interest, subs: map[string][]*localSub{},
		senders: map[string]weak.Pointer[TrackSender]{}}, nil
}

// TrackSender publishes the packets of one track layer. The subject is computed once; Send does
// not allocate.
type TrackSender struct {
	bus     *MediaBus
	subject string
	// repair keeps what went to NATS for other nodes' repairs, from the first packet that did.
	repair     atomic.Pointer[repairCache]
	repairOnce sync.Once
}

// Sender returns a sender for md.<room>.<track>.<layer>. On a local bus, this node's
// subscriptions to the track made while the sender is in use need no NATS subscription: the
// node's own packets reach them directly and no other node publishes the track.
func (b *MediaBus) Sender(room, track, layer string) *TrackSender {
	s := &TrackSender{bus: b, subject: MediaSubject(room, track, layer)}
	if b.local {
		b.mu.Lock()
		b.senders[s.subject] = weak.Make(s)
		b.mu.Unlock()
		// A publisher that ended leaves nothing here: its subject and weak handle, kept
		// until 64 senders had piled up, outlived its session and pinned partly used small
		// spans of an idle node (issue 12's heap dumps: 62 subjects and 64 handles after
		// 310 room lifecycles, keeping 250 KiB of spans in use).
		runtime.AddCleanup(s, b.forgetSender, s.subject)
	}
	return s
}

// forgetSender drops subject's sender once it is gone, unless a newer one took its place,
// and lets an emptied map go rather than keep the table it grew to.
func (b *MediaBus) forgetSender(subject string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if p, ok := b.senders[subject]; ok && p.Value() == nil {
		delete(b.senders, subject)
	}
	if len(b.senders) == 0 {
		b.senders = map[string]weak.Pointer[TrackSender]{}
	}
}

// publishing reports whether a sender of subject is in use on this node.
func (b *MediaBus) publishing(subject string) bool {
	b.mu.RLock()
	defer b.mu.RUnlock()
	p, ok := b.senders[subject]
	return ok && p.Value() != nil
}

// Send publishes one RTP packet (other nodes get it from NATS) and, on a local bus, then runs
// this node's subscribers of the track. The bytes are not kept after it returns.
func (s *TrackSender) Send(pkt []byte) error {
	var err error
	if s.bus.interest == nil || s.bus.interest(s.subject) {
		if err = s.bus.rtp.Publish(s.subject, pkt); err == nil {
			s.remember(pkt)
		}
	}
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
		if s.sub.ended.Load() {
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
	live := slices.DeleteFunc(slices.Clone(b.subs[subject]), func(s *localSub) bool { return s.sub.ended.Load() })
	if len(live) == 0 {
		delete(b.subs, subject)
		return
	}
	b.subs[subject] = live
}

// Subscribe delivers the packets of one track layer to fn, in order: other nodes' on the RTP
// connection's delivery goroutine, this node's (on a local bus) on the sender's. A gap in
// another node's packets is asked for again from that node (repair.go); the packets it
// resends arrive late, on another goroutine: fn must be safe for concurrent use. fn must
// not keep data after it returns.
func (b *MediaBus) Subscribe(room, track, layer string, fn func(data []byte)) (*MediaSubscription, error) {
	subj := MediaSubject(room, track, layer)
	ms := &MediaSubscription{bus: b, subject: subj}
	if !b.local || !b.publishing(subj) {
		inbox := nats.NewInbox()
		rsub, err := b.rtp.Subscribe(inbox, func(m *nats.Msg) {
			b.received.Add(1)
			fn(m.Data)
		})
		if err != nil {
			return nil, fmt.Errorf("pipeline: media repair subscribe %s: %w", subj, err)
		}
		ms.repair = rsub
		var gaps gapWatch // the subscription's callbacks run one at a time
		sub, err := b.rtp.Subscribe(subj, func(m *nats.Msg) {
			b.received.Add(1)
			if ssrc, from, n := gaps.missing(m.Data); n > 0 {
				b.requestRepair(subj, inbox, ssrc, from, n)
			}
			fn(m.Data)
		})
		if err != nil {
			_ = rsub.Unsubscribe()
			return nil, fmt.Errorf("pipeline: media subscribe %s: %w", subj, err)
		}
		// Media is better dropped than queued without bound behind a slow consumer.
		if err := sub.SetPendingLimits(4096, 16<<20); err != nil {
			_ = sub.Unsubscribe()
			_ = rsub.Unsubscribe()
			return nil, fmt.Errorf("pipeline: media subscribe %s: %w", subj, err)
		}
		ms.nats = sub
	}
	if b.local {
		b.mu.Lock()
		// A new slice: deliver may be reading the old one.
		b.subs[subj] = append(slices.Clip(b.subs[subj]), &localSub{sub: ms, fn: fn})
		b.mu.Unlock()
		b.prune(subj)
	}
	return ms, nil
}

// SendFeedback publishes a marshalled RTCP packet toward the publisher of a track; layer,
// if not empty, names the simulcast layer it is about (a keyframe request for the layer a
// viewer is on or switching to), carried in the FeedbackLayerHeader.
func (b *MediaBus) SendFeedback(room, track, layer string, rtcp []byte) error {
	subj := FeedbackSubject(room, track)
	msg := &nats.Msg{Subject: subj, Data: rtcp}
	if layer != "" {
		msg.Header = nats.Header{FeedbackLayerHeader: []string{layer}}
	}
	if err := b.nc.PublishMsg(msg); err != nil {
		return fmt.Errorf("pipeline: feedback publish %s: %w", subj, err)
	}
	return nil
}

// FeedbackLayerHeader names the simulcast layer a feedback message is about.
const FeedbackLayerHeader = "Jetmedia-Layer"

// SubscribeFeedback delivers RTCP feedback for one track to fn, with the layer it names ("":
// the track as a whole).
func (b *MediaBus) SubscribeFeedback(room, track string, fn func(layer string, data []byte)) (*nats.Subscription, error) {
	subj := FeedbackSubject(room, track)
	sub, err := b.nc.Subscribe(subj, func(m *nats.Msg) { fn(m.Header.Get(FeedbackLayerHeader), m.Data) })
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
