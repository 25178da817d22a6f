package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go/jetstream"
)

// ConsumerFunc names the stream and consumer a watermill topic reads from.
type ConsumerFunc func(topic string) (stream string, cfg jetstream.ConsumerConfig)

// SubscriberConfig configures a JetStreamSubscriber.
type SubscriberConfig struct {
	// Consumer maps a topic to its stream and consumer. A consumer with a Durable name (or a
	// Name shared by several subscribers: a consumer group) outlives the subscription.
	Consumer ConsumerFunc
	// DeleteOnClose deletes the consumer when its subscription ends (for per-subscriber
	// consumers with random names).
	DeleteOnClose bool
	// NakDelay is how long JetStream waits before redelivering a nacked message (default 1 s).
	NakDelay time.Duration
	// Unmarshal turns a JetStream message into a watermill one (default: eventUnmarshaler).
	Unmarshal func(jetstream.Msg) (*message.Message, error)
	Logger    *slog.Logger
}

// JetStreamSubscriber is a watermill Subscriber over JetStream pull consumers. Each
// subscription has one goroutine that hands messages to watermill one at a time and waits for
// each to be acked or nacked before the next, which keeps the stream's order; it alone sends on
// and closes the output channel. A message not acked when the subscription ends is redelivered
// by JetStream after the consumer's AckWait. It does not own the connection.
//
// It replaces watermill-nats' jetstream.Subscriber (v2.1.3), whose close path closes the output
// channel while a delivery callback may still send on it (a data race, and a "send on closed
// channel" panic that kills the process).
type JetStreamSubscriber struct {
	js  jetstream.JetStream
	cfg SubscriberConfig
	log *slog.Logger

	mu      sync.Mutex
	closed  bool
	closing chan struct{}
	wg      sync.WaitGroup
}

var _ message.Subscriber = (*JetStreamSubscriber)(nil)

// NewJetStreamSubscriber returns a subscriber using js.
func NewJetStreamSubscriber(js jetstream.JetStream, cfg SubscriberConfig) (*JetStreamSubscriber, error) {
	if cfg.Consumer == nil {
		return nil, errors.New("pipeline: subscriber needs a Consumer func")
	}
	if cfg.NakDelay == 0 {
		cfg.NakDelay = time.Second
	}
	if cfg.Unmarshal == nil {
		cfg.Unmarshal = eventUnmarshaler{}.Unmarshal
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &JetStreamSubscriber{js: js, cfg: cfg, log: log.With("component", "subscriber"), closing: make(chan struct{})}, nil
}

// Subscribe starts consuming topic. The channel closes when ctx ends or the subscriber closes.
func (s *JetStreamSubscriber) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, errors.New("pipeline: subscriber is closed")
	}
	stream, ccfg := s.cfg.Consumer(topic)
	consumer, err := s.js.CreateOrUpdateConsumer(ctx, stream, ccfg)
	if err != nil {
		return nil, fmt.Errorf("pipeline: consumer for %s on %s: %w", topic, stream, err)
	}
	// A small prefetch: a prefetched message's ack timer runs while it waits in the buffer,
	// so the consumer's AckWait must cover handling this many messages.
	// A 5 s pull expiry (heartbeat 2.5 s): a pull request lost while a new cluster settles its
	// consumer leaders is noticed ("no heartbeat") and re-sent within seconds, not after the
	// default 30 s expiry (measured: fresh durables on a 2-node cluster stalled 20 s+).
	it, err := consumer.Messages(jetstream.PullMaxMessages(16), jetstream.PullExpiry(5*time.Second))
	if err != nil {
		return nil, fmt.Errorf("pipeline: consume %s: %w", topic, err)
	}
	out := make(chan *message.Message)
	subCtx, cancel := context.WithCancel(ctx)
	s.wg.Add(2)
	go func() {
		defer s.wg.Done()
		select {
		case <-subCtx.Done():
		case <-s.closing:
		}
		cancel()
		it.Stop() // unblocks Next
	}()
	go func() {
		defer s.wg.Done()
		defer close(out)
		defer cancel()
		s.deliver(subCtx, it, out)
		if s.cfg.DeleteOnClose {
			name := ccfg.Name
			if name == "" {
				name = ccfg.Durable
			}
			dctx, dcancel := context.WithTimeout(context.Background(), 5*time.Second)
			if err := s.js.DeleteConsumer(dctx, stream, name); err != nil {
				s.log.Debug("delete consumer", "consumer", name, "err", err)
			}
			dcancel()
		}
	}()
	return out, nil
}

func (s *JetStreamSubscriber) deliver(ctx context.Context, it jetstream.MessagesContext, out chan<- *message.Message) {
	for {
		msg, err := it.Next()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				return
			}
			s.log.Warn("pull failed; retrying", "err", err)
			continue
		}
		m, err := s.cfg.Unmarshal(msg)
		if err != nil {
			s.log.Error("cannot decode message; terminating it", "subject", msg.Subject(), "err", err)
			_ = msg.Term()
			continue
		}
		mctx, mcancel := context.WithCancel(ctx)
		m.SetContext(mctx)
		select {
		case out <- m:
		case <-ctx.Done():
			mcancel()
			return // not acked: redelivered after AckWait
		}
		select {
		case <-m.Acked():
			// A plain ack, not a double ack: a lost ack means one redelivery, which handlers
			// tolerate (at least once), while a round trip per message would cap throughput.
			if err := msg.Ack(); err != nil {
				s.log.Warn("ack failed; the message will be redelivered", "err", err)
			}
		case <-m.Nacked():
			if err := msg.NakWithDelay(s.cfg.NakDelay); err != nil {
				s.log.Warn("nak failed", "err", err)
			}
		case <-ctx.Done():
			mcancel()
			return
		}
		mcancel()
	}
}

// Close ends every subscription and waits for their goroutines. Idempotent.
func (s *JetStreamSubscriber) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.closing)
	s.mu.Unlock()
	s.wg.Wait()
	return nil
}
