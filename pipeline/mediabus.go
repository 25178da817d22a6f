package pipeline

import (
	"fmt"
	"sync/atomic"

	"github.com/nats-io/nats.go"
)

// MediaBus carries RTP and RTCP feedback on core NATS subjects (never JetStream): best effort,
// routed by interest, so a packet crosses to another server once whatever the number of
// subscribers there.
type MediaBus struct {
	nc       *nats.Conn
	sent     atomic.Uint64
	received atomic.Uint64
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
func NewMediaBus(nc *nats.Conn) *MediaBus { return &MediaBus{nc: nc} }

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

// Send publishes one RTP packet. The bytes are copied before it returns.
func (s *TrackSender) Send(pkt []byte) error {
	if err := s.bus.nc.Publish(s.subject, pkt); err != nil {
		return fmt.Errorf("pipeline: media publish %s: %w", s.subject, err)
	}
	s.bus.sent.Add(1)
	return nil
}

// Subscribe delivers the packets of one track layer to fn, on the connection's delivery
// goroutine, in order. fn must not keep data after it returns.
func (b *MediaBus) Subscribe(room, track, layer string, fn func(data []byte)) (*nats.Subscription, error) {
	subj := MediaSubject(room, track, layer)
	sub, err := b.nc.Subscribe(subj, func(m *nats.Msg) {
		b.received.Add(1)
		fn(m.Data)
	})
	if err != nil {
		return nil, fmt.Errorf("pipeline: media subscribe %s: %w", subj, err)
	}
	// Media is better dropped than queued without bound behind a slow consumer.
	if err := sub.SetPendingLimits(4096, 16<<20); err != nil {
		return nil, fmt.Errorf("pipeline: media subscribe %s: %w", subj, err)
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
func (b *MediaBus) Flush() error { return b.nc.Flush() }
