package eventlog

import (
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Metadata keys the event subscriber sets on every watermill message.
const (
	MetaSeq     = "jm_seq"     // stream sequence of the event
	MetaSubject = "jm_subject" // subject the event was stored under
	// MetaPending is how many events of the consumer the server still had to deliver when it
	// delivered this one; "0" marks the newest event at that time (where a batch should end).
	MetaPending = "jm_pending"
	// MetaBatchEnd is "1" on the last message of a batch that a subscriber with AckBatch
	// acknowledges together once the handler has acked this one: the handler must have
	// written what it folded of the batch before it acks this message.
	MetaBatchEnd = "jm_batch_end"
)

// EventSubscriberConfig describes one durable consumer of the event log.
type EventSubscriberConfig struct {
	// Durable is the consumer's name; its ack floor is the consumer's checkpoint and survives
	// restarts of the node.
	Durable string
	// Filter is the subject filter, e.g. "ev.>" for every room.
	Filter string
	// AckWait is how long an event may stay unacknowledged before redelivery.
	AckWait time.Duration
	// MaxAckPending is how many events may be in flight (default 1). With 1, the server sends
	// the next event only after the previous one's ack: a round trip per event, but the order
	// holds even for several subscribers sharing the durable. More is for one subscriber per
	// durable (a node's own consumer): the events are prefetched, handed over one at a time in
	// log order, and a nacked one is retried in place before any event after it.
	MaxAckPending int
	// StartSeq, if not 0, is the stream sequence a new consumer starts at (default: the start
	// of the log). It does not move an existing durable.
	StartSeq uint64
	// AckBatch, if above 0, acknowledges events in batches of at most this many, after the
	// handler acked the batch's last (see SubscriberConfig.AckBatch); MaxAckPending defaults
	// to it and may not be below it.
	AckBatch int
	Logger   *slog.Logger
}

// NewEventSubscriber returns a watermill subscriber of a durable, in-order (one in flight)
// consumer of the EVENTS stream; the topic it is subscribed with is ignored. It does not own
// nc.
func NewEventSubscriber(nc *nats.Conn, cfg EventSubscriberConfig) (*JetStreamSubscriber, error) {
	if cfg.Durable == "" || cfg.Filter == "" {
		return nil, fmt.Errorf("pipeline: event subscriber needs a durable name and a filter")
	}
	if cfg.AckWait == 0 {
		// Short: after a crash the unacknowledged event is redelivered this much later, and
		// folds take milliseconds.
		cfg.AckWait = 10 * time.Second
	}
	if cfg.MaxAckPending == 0 {
		cfg.MaxAckPending = max(1, cfg.AckBatch)
	}
	if cfg.MaxAckPending < 0 || cfg.MaxAckPending < cfg.AckBatch {
		return nil, fmt.Errorf("pipeline: event subscriber %s: MaxAckPending %d is negative or below AckBatch %d",
			cfg.Durable, cfg.MaxAckPending, cfg.AckBatch)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("pipeline: event subscriber %s: %w", cfg.Durable, err)
	}
	consumerCfg := jetstream.ConsumerConfig{
		Durable:       cfg.Durable,
		FilterSubject: cfg.Filter,
		AckPolicy:     jetstream.AckExplicitPolicy,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		MaxAckPending: cfg.MaxAckPending,
		AckWait:       cfg.AckWait,
		MaxDeliver:    -1,
	}
	if cfg.StartSeq > 0 {
		consumerCfg.DeliverPolicy = jetstream.DeliverByStartSequencePolicy
		consumerCfg.OptStartSeq = cfg.StartSeq
	}
	prefetch := 16
	if cfg.MaxAckPending > prefetch {
		prefetch = min(cfg.MaxAckPending, 256)
	}
	return NewJetStreamSubscriber(js, SubscriberConfig{
		Consumer:    func(string) (string, jetstream.ConsumerConfig) { return StreamEvents, consumerCfg },
		Prefetch:    prefetch,
		RetryNacked: cfg.MaxAckPending > 1,
		AckBatch:    cfg.AckBatch,
		Logger:      cfg.Logger,
	})
}

// eventUnmarshaler turns a stored event into a watermill message whose UUID is the event id
// and whose metadata carries the stream sequence, which folds use as their checkpoint.
type eventUnmarshaler struct{}

func (eventUnmarshaler) Unmarshal(msg jetstream.Msg) (*message.Message, error) {
	id := msg.Headers().Get(nats.MsgIdHdr)
	m := message.NewMessage(id, msg.Data())
	if md, err := msg.Metadata(); err == nil {
		m.Metadata.Set(MetaSeq, strconv.FormatUint(md.Sequence.Stream, 10))
		m.Metadata.Set(MetaPending, strconv.FormatUint(md.NumPending, 10))
	}
	m.Metadata.Set(MetaSubject, msg.Subject())
	return m, nil
}

// NewRouter returns a watermill router with jetmedia's middleware: panics become errors, and a
// failing handler is retried with backoff before the event is handed back to JetStream
// (redelivered later), so a bad event never kills the process.
func NewRouter(log *slog.Logger) (*message.Router, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r, err := message.NewRouter(message.RouterConfig{CloseTimeout: 10 * time.Second},
		watermill.NewSlogLoggerWithLevelMapping(log, map[slog.Level]slog.Level{slog.LevelInfo: slog.LevelDebug}))
	if err != nil {
		return nil, fmt.Errorf("pipeline: router: %w", err)
	}
	r.AddMiddleware(
		middleware.Recoverer,
		middleware.Retry{
			MaxRetries:      5,
			InitialInterval: 50 * time.Millisecond,
			MaxInterval:     2 * time.Second,
			Multiplier:      2,
			Logger:          watermill.NewSlogLogger(log),
		}.Middleware,
	)
	return r, nil
}
