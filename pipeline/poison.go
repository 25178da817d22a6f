package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Names of the poison queue: events a consumer failed to handle after its retries are parked
// here, one subject per consumer, so that a bad event never blocks the events after it.
const (
	StreamPoison   = "POISON"
	PoisonSubjects = "poison.>"
)

// PoisonSubject is where the consumer named consumer parks the events it cannot handle.
func PoisonSubject(consumer string) string { return "poison." + consumer }

// PoisonStreamConfig is the declaration of the POISON stream. Parked events are kept 30 days:
// long enough to notice, inspect and re-drive them, short enough not to grow forever.
func PoisonStreamConfig(sc StorageConfig) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        StreamPoison,
		Description: "jetmedia poison queue: events a consumer failed to handle after its retries",
		Subjects:    []string{PoisonSubjects},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		MaxAge:      30 * 24 * time.Hour,
		Replicas:    max(sc.Replicas, 1),
		AllowDirect: true,
	}
}

// DeclarePoison creates or updates the POISON stream.
func DeclarePoison(ctx context.Context, js jetstream.JetStream, sc StorageConfig) error {
	if _, err := js.CreateOrUpdateStream(ctx, PoisonStreamConfig(sc)); err != nil {
		return fmt.Errorf("pipeline: declare stream %s: %w", StreamPoison, err)
	}
	return nil
}

// PoisonPublisher is the watermill Publisher the poison middleware writes with: each message
// is published to JetStream on the topic as subject, its metadata as headers (the event's
// stream sequence and subject, and watermill's reason_poisoned). It does not own js.
type PoisonPublisher struct{ js jetstream.JetStream }

var _ message.Publisher = PoisonPublisher{}

// NewPoisonPublisher returns a publisher using js.
func NewPoisonPublisher(js jetstream.JetStream) PoisonPublisher { return PoisonPublisher{js: js} }

// Publish stores msgs on subject topic and waits for JetStream's acknowledgement, so a parked
// event is durable before the consumer acknowledges the original.
func (p PoisonPublisher) Publish(topic string, msgs ...*message.Message) error {
	for _, m := range msgs {
		nm := nats.NewMsg(topic)
		nm.Data = m.Payload
		for k, v := range m.Metadata {
			// A header value cannot hold a line break (errors.Join's errors do).
			nm.Header.Set(k, strings.NewReplacer("\r", " ", "\n", " ").Replace(v))
		}
		// A retried park of the same event by the same handler is stored once.
		if seq := m.Metadata.Get(MetaSeq); seq != "" {
			nm.Header.Set(nats.MsgIdHdr, topic+"-"+m.Metadata.Get(middleware.PoisonedHandlerKey)+"-"+seq)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := p.js.PublishMsg(ctx, nm)
		cancel()
		if err != nil {
			return fmt.Errorf("pipeline: park message %s on %s: %w", m.UUID, topic, err)
		}
	}
	return nil
}

// Close does nothing: the publisher does not own the connection.
func (PoisonPublisher) Close() error { return nil }

// ConsumerRouterConfig configures NewConsumerRouter.
type ConsumerRouterConfig struct {
	// Poison receives the events whose handling still fails after the retries, on
	// PoisonTopic (default: no poison queue; the event is redelivered by JetStream).
	Poison      message.Publisher
	PoisonTopic string
	// MaxRetries and InitialInterval of the retry with exponential backoff (defaults 5 and
	// 50 ms; the interval doubles up to 2 s).
	MaxRetries      int
	InitialInterval time.Duration
	Logger          *slog.Logger
}

// NewConsumerRouter returns a watermill router for the consumers of the event log (the read
// models): each handler is wrapped, outermost first, in the poison queue, the retry with
// backoff and the recoverer. So a panic becomes an error, an error is retried, and an event
// that still fails is parked on the poison queue and acknowledged: the events after it go on.
// (NewRouter's order cannot take a poison queue: a handler-level middleware runs inside the
// router-level retry and would park on the first failure.)
func NewConsumerRouter(cfg ConsumerRouterConfig) (*message.Router, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.MaxRetries == 0 {
		cfg.MaxRetries = 5
	}
	if cfg.InitialInterval == 0 {
		cfg.InitialInterval = 50 * time.Millisecond
	}
	if (cfg.Poison == nil) != (cfg.PoisonTopic == "") {
		return nil, errors.New("pipeline: consumer router: Poison and PoisonTopic go together")
	}
	r, err := message.NewRouter(message.RouterConfig{CloseTimeout: 10 * time.Second},
		watermill.NewSlogLoggerWithLevelMapping(log, map[slog.Level]slog.Level{slog.LevelInfo: slog.LevelDebug}))
	if err != nil {
		return nil, fmt.Errorf("pipeline: router: %w", err)
	}
	if cfg.Poison != nil {
		poison, err := middleware.PoisonQueue(cfg.Poison, cfg.PoisonTopic)
		if err != nil {
			return nil, fmt.Errorf("pipeline: poison queue: %w", err)
		}
		r.AddMiddleware(poison)
	}
	r.AddMiddleware(
		middleware.Retry{
			MaxRetries:      cfg.MaxRetries,
			InitialInterval: cfg.InitialInterval,
			MaxInterval:     2 * time.Second,
			Multiplier:      2,
			Logger:          watermill.NewSlogLogger(log),
		}.Middleware,
		middleware.Recoverer,
	)
	return r, nil
}
