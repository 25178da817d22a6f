package pipeline

import (
	"context"
	"fmt"
	"log/slog"
	"runtime"
	"strconv"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wmjs "github.com/ThreeDotsLabs/watermill-nats/v2/pkg/jetstream"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Metadata keys the event subscriber sets on every watermill message.
const (
	MetaSeq     = "jm_seq"     // stream sequence of the event
	MetaSubject = "jm_subject" // subject the event was stored under
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
	Logger  *slog.Logger
}

// NewEventSubscriber returns a watermill subscriber of a durable, in-order (one in flight)
// consumer of the EVENTS stream. It takes ownership of nc: closing the subscriber drains it, so
// give it a connection of its own.
func NewEventSubscriber(nc *nats.Conn, cfg EventSubscriberConfig) (*wmjs.Subscriber, error) {
	if cfg.Durable == "" || cfg.Filter == "" {
		return nil, fmt.Errorf("pipeline: event subscriber needs a durable name and a filter")
	}
	if cfg.AckWait == 0 {
		// Short: after a crash the unacknowledged event is redelivered this much later, and
		// folds take milliseconds.
		cfg.AckWait = 10 * time.Second
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	consumerCfg := jetstream.ConsumerConfig{
		Durable:       cfg.Durable,
		FilterSubject: cfg.Filter,
		AckPolicy:     jetstream.AckExplicitPolicy,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		// One event in flight keeps folds in log order.
		MaxAckPending: 1,
		AckWait:       cfg.AckWait,
		MaxDeliver:    -1,
	}
	init := func(ctx context.Context, js jetstream.JetStream, _ string) (jetstream.Consumer, func(context.Context, watermill.LoggerAdapter), error) {
		c, err := js.CreateOrUpdateConsumer(ctx, StreamEvents, consumerCfg)
		if err != nil {
			return nil, nil, fmt.Errorf("pipeline: consumer %s: %w", cfg.Durable, err)
		}
		return closeSafeConsumer{c}, nil, nil
	}
	sub, err := wmjs.NewSubscriber(wmjs.SubscriberConfig{
		Conn:                nc,
		Logger:              watermill.NewSlogLoggerWithLevelMapping(log, map[slog.Level]slog.Level{slog.LevelInfo: slog.LevelDebug}),
		AckWaitTimeout:      cfg.AckWait,
		ResourceInitializer: init,
		Unmarshaler:         eventUnmarshaler{},
		NakDelay:            wmjs.NewStaticDelay(time.Second),
	})
	if err != nil {
		return nil, fmt.Errorf("pipeline: event subscriber %s: %w", cfg.Durable, err)
	}
	return sub, nil
}

// eventUnmarshaler turns a stored event into a watermill message whose UUID is the event id
// and whose metadata carries the stream sequence, which folds use as their checkpoint.
type eventUnmarshaler struct{}

func (eventUnmarshaler) Unmarshal(msg jetstream.Msg) (*message.Message, error) {
	id := msg.Headers().Get(nats.MsgIdHdr)
	m := message.NewMessage(id, msg.Data())
	if md, err := msg.Metadata(); err == nil {
		m.Metadata.Set(MetaSeq, strconv.FormatUint(md.Sequence.Stream, 10))
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

// closeSafeConsumer works around a race in watermill-nats v2.1.3's jetstream subscriber: when
// the subscriber is closed or its context ends, it closes the output channel while a delivery
// callback may still be selecting on a send to it, and "send on closed channel" panics on the
// NATS delivery goroutine, killing the process. The callback's message is not acked then, so
// recovering that one panic is safe: JetStream redelivers the event to the next subscriber.
type closeSafeConsumer struct{ jetstream.Consumer }

func (c closeSafeConsumer) Consume(h jetstream.MessageHandler, opts ...jetstream.PullConsumeOpt) (jetstream.ConsumeContext, error) {
	return c.Consumer.Consume(func(msg jetstream.Msg) {
		defer func() {
			if r := recover(); r != nil {
				if err, ok := r.(runtime.Error); !ok || err.Error() != "send on closed channel" {
					panic(r)
				}
			}
		}()
		h(msg)
	}, opts...)
}
