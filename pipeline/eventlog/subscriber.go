package eventlog

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
	// Prefetch is how many messages a pull asks for (default 16). A prefetched message's ack
	// timer runs while it waits, so the consumer's AckWait must cover handling this many.
	Prefetch int
	// RetryNacked hands a nacked message to watermill again, after NakDelay, instead of NAKing
	// it to JetStream, and hands nothing after it until it is acked. Consumers with several
	// messages in flight need it to keep the stream's order: JetStream would redeliver a NAKed
	// message after the ones behind it.
	RetryNacked bool
	// AckBatch, if above 0, acknowledges messages to JetStream in batches instead of one by
	// one: a message the handler acked is held until the handler has acked the last message
	// of its batch, which ends at the newest message the server had to deliver (its NumPending
	// is 0) or after AckBatch messages, and carries MetaBatchEnd. A handler that writes what it
	// folded at each batch end (the rooms projection) thus keeps the consumer's ack floor a
	// checkpoint: nothing is acknowledged before it is written. The consumer's MaxAckPending
	// must be at least AckBatch, or the server stops delivering before a batch can end.
	AckBatch int
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
	if cfg.Prefetch == 0 {
		cfg.Prefetch = 16
	}
	if cfg.Prefetch < 0 {
		return nil, fmt.Errorf("pipeline: subscriber prefetch %d is negative", cfg.Prefetch)
	}
	if cfg.AckBatch < 0 {
		return nil, fmt.Errorf("pipeline: subscriber ack batch %d is negative", cfg.AckBatch)
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
	if s.cfg.AckBatch > 0 {
		var err error
		if ccfg, err = resumeAtAckFloor(ctx, s.js, s.log, stream, ccfg); err != nil {
			return nil, err
		}
	}
	consumer, err := s.js.CreateOrUpdateConsumer(ctx, stream, ccfg)
	if err != nil {
		return nil, fmt.Errorf("pipeline: consumer for %s on %s: %w", topic, stream, err)
	}
	// A small prefetch: a prefetched message's ack timer runs while it waits in the buffer,
	// so the consumer's AckWait must cover handling this many messages.
	// A 5 s pull expiry (heartbeat 2.5 s): a pull request lost while a new cluster settles its
	// consumer leaders is noticed ("no heartbeat") and re-sent within seconds, not after the
	// default 30 s expiry (measured: fresh durables on a 2-node cluster stalled 20 s+).
	it, err := consumer.Messages(jetstream.PullMaxMessages(s.cfg.Prefetch), jetstream.PullExpiry(5*time.Second))
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

// resumeAtAckFloor resets a durable whose previous reader (this process before, another node
// before a projection's writer changed) left messages unacknowledged to its ack floor + 1. A batch held when a node stopped or crashed would otherwise be
// redelivered after AckWait, behind the newer messages the server hands out at once, and a
// fold that has seen the newer ones skips them as redeliveries.
func resumeAtAckFloor(ctx context.Context, js jetstream.JetStream, log *slog.Logger, stream string, ccfg jetstream.ConsumerConfig) (jetstream.ConsumerConfig, error) {
	name := ccfg.Durable
	if name == "" {
		name = ccfg.Name
	}
	c, err := js.Consumer(ctx, stream, name)
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		return ccfg, nil
	}
	if err != nil {
		return ccfg, fmt.Errorf("pipeline: consumer %s on %s: %w", name, stream, err)
	}
	info, err := c.Info(ctx)
	if err != nil {
		return ccfg, fmt.Errorf("pipeline: consumer %s on %s: %w", name, stream, err)
	}
	if info.NumAckPending == 0 && info.NumRedelivered == 0 {
		// Keep where it started (recreated before, perhaps): that cannot be updated.
		ccfg.DeliverPolicy, ccfg.OptStartSeq = info.Config.DeliverPolicy, info.Config.OptStartSeq
		return ccfg, nil
	}
	// JetStream's consumer reset: one proposal to the consumer's replicas. Deleting and
	// recreating the durable (as this did before) needs the meta leader and a new replica
	// group: after a node's kill, under -race, that took 5-18 s, all of it added to how late
	// the rooms projection was when its writer changed (TestKillProjector).
	resp, err := js.ResetConsumer(ctx, stream, name)
	if err != nil {
		return ccfg, fmt.Errorf("pipeline: reset consumer %s on %s to its ack floor: %w", name, stream, err)
	}
	ccfg.DeliverPolicy, ccfg.OptStartSeq = info.Config.DeliverPolicy, info.Config.OptStartSeq
	log.Info("consumer resumes at its ack floor", "consumer", name, "seq", resp.ResetSeq,
		"unacknowledged", info.NumAckPending)
	return ccfg, nil
}

func (s *JetStreamSubscriber) deliver(ctx context.Context, it jetstream.MessagesContext, out chan<- *message.Message) {
	// held are the messages of the open batch (AckBatch) that watermill acked already; they
	// are acknowledged with the batch's last one. Left unacknowledged when ctx ends, they are
	// redelivered after AckWait.
	var held []jetstream.Msg
	for {
		msg, err := it.Next()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				return
			}
			s.log.Warn("pull failed; retrying", "err", err)
			continue
		}
		var ok bool
		if held, ok = s.handOver(ctx, msg, out, held); !ok {
			return
		}
	}
}

// batchEnd reports whether msg ends an AckBatch batch that holds held messages before it.
func (s *JetStreamSubscriber) batchEnd(msg jetstream.Msg, held int) bool {
	if held+1 >= s.cfg.AckBatch {
		return true
	}
	md, err := msg.Metadata()
	return err != nil || md.NumPending == 0
}

func batchEndValue(end bool) string {
	if end {
		return "1"
	}
	return "0"
}

// settle acknowledges msg, and the held messages with it, or holds it for its batch's end.
func (s *JetStreamSubscriber) settle(msg jetstream.Msg, held []jetstream.Msg, end bool) []jetstream.Msg {
	if s.cfg.AckBatch > 0 && !end {
		return append(held, msg)
	}
	// A plain ack, not a double ack: a lost ack means one redelivery, which handlers
	// tolerate (at least once), while a round trip per message would cap throughput.
	for _, h := range append(held, msg) {
		if err := h.Ack(); err != nil {
			s.log.Warn("ack failed; the message will be redelivered", "err", err)
		}
	}
	return held[:0]
}

// handOver gives msg to watermill and settles it with JetStream once watermill has; false
// when ctx ended first (the message is then redelivered after AckWait). It returns the held
// messages of the open batch.
func (s *JetStreamSubscriber) handOver(ctx context.Context, msg jetstream.Msg, out chan<- *message.Message, held []jetstream.Msg) ([]jetstream.Msg, bool) {
	end := s.cfg.AckBatch > 0 && s.batchEnd(msg, len(held))
	for {
		m, err := s.cfg.Unmarshal(msg)
		if err != nil {
			s.log.Error("cannot decode message; terminating it", "subject", msg.Subject(), "err", err)
			_ = msg.Term()
			return held, true
		}
		if s.cfg.AckBatch > 0 {
			m.Metadata.Set(MetaBatchEnd, batchEndValue(end))
		}
		mctx, mcancel := context.WithCancel(ctx)
		m.SetContext(mctx)
		select {
		case out <- m:
		case <-ctx.Done():
			mcancel()
			return held, false // not acked: redelivered after AckWait
		}
		select {
		case <-m.Acked():
			mcancel()
			return s.settle(msg, held, end), true
		case <-m.Nacked():
			mcancel()
			if !s.nacked(ctx, msg, held) {
				return held, false
			}
			if !s.cfg.RetryNacked {
				return held, true
			}
		case <-ctx.Done():
			mcancel()
			return held, false
		}
	}
}

// nacked settles a message watermill nacked: NAKed to JetStream, or with RetryNacked kept
// (with the batch held before it) for NakDelay, to be handed over again; false when ctx ended
// meanwhile.
func (s *JetStreamSubscriber) nacked(ctx context.Context, msg jetstream.Msg, held []jetstream.Msg) bool {
	if !s.cfg.RetryNacked {
		if err := msg.NakWithDelay(s.cfg.NakDelay); err != nil {
			s.log.Warn("nak failed", "err", err)
		}
		return true
	}
	// Keep it ours meanwhile: no redelivery of it behind the messages after it.
	for _, h := range append(held, msg) {
		if err := h.InProgress(); err != nil {
			s.log.Warn("in-progress failed", "err", err)
		}
	}
	select {
	case <-time.After(s.cfg.NakDelay):
		return true
	case <-ctx.Done():
		return false
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
