package eventlog

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetmedia/jetmedia/events"
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
		Placement:   sc.Placement(),
		AllowDirect: true,
	}
}

// MetaID is the header of a parked event that holds its event id (the watermill message's
// UUID, which the event subscriber takes from the stored event's Nats-Msg-Id).
const MetaID = "jm_id"

// Poisoned is one event parked on the poison queue, as the poison middleware and
// PoisonPublisher stored it.
type Poisoned struct {
	Seq      uint64    `json:"seq"`       // sequence in the POISON stream
	ParkedAt time.Time `json:"parked_at"` // when it was parked (after the last retry)
	Subject  string    `json:"subject"`   // poison.<consumer group>
	Handler  string    `json:"handler"`   // the router handler that failed, e.g. readmodel-analytics
	Reason   string    `json:"reason"`    // the handler's last error (watermill's reason_poisoned)
	// The event: its sequence and subject in the EVENTS stream, and what its payload says (or,
	// for a payload that does not decode, what the subject and headers say).
	EventSeq     uint64 `json:"event_seq"`
	EventSubject string `json:"event_subject"`
	EventID      string `json:"event_id,omitempty"`
	Type         string `json:"type,omitempty"`
	Room         string `json:"room,omitempty"`
	// DecodeError is set when the parked payload is not an event.
	DecodeError string `json:"decode_error,omitempty"`
}

// ListPoisoned calls fn with each event parked on subject (a poison subject or a filter such
// as PoisonSubjects), oldest first. Without a POISON stream nothing is parked.
func ListPoisoned(ctx context.Context, js jetstream.JetStream, subject string, fn func(Poisoned) error) error {
	stream, err := js.Stream(ctx, StreamPoison)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("pipeline: stream %s: %w", StreamPoison, err)
	}
	for seq := uint64(1); ; {
		m, err := stream.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(subject))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("pipeline: read poisoned events: %w", err)
		}
		seq = m.Sequence + 1
		if err := fn(toPoisoned(m)); err != nil {
			return err
		}
	}
}

func toPoisoned(m *jetstream.RawStreamMsg) Poisoned {
	p := Poisoned{Seq: m.Sequence, ParkedAt: m.Time, Subject: m.Subject,
		Handler: m.Header.Get(middleware.PoisonedHandlerKey), Reason: m.Header.Get(middleware.ReasonForPoisonedKey),
		EventSubject: m.Header.Get(MetaSubject), EventID: m.Header.Get(MetaID)}
	p.EventSeq, _ = strconv.ParseUint(m.Header.Get(MetaSeq), 10, 64)
	// ev.<room>.<kind>
	if parts := strings.SplitN(p.EventSubject, ".", 3); len(parts) == 3 && parts[0] == "ev" {
		p.Room = parts[1]
	}
	e, err := events.Decode(m.Data)
	if err != nil {
		p.DecodeError = err.Error()
		return p
	}
	p.EventID, p.Type, p.Room = e.ID, e.Type, e.Room
	return p
}

// ErrNotPoisoned is returned for a sequence that holds no parked event of the subject asked.
var ErrNotPoisoned = errors.New("no such parked event")

// DropPoisoned removes the parked event at seq of the POISON stream, which must be one parked
// on subject (a poison subject or filter): the operator gives it up.
func DropPoisoned(ctx context.Context, js jetstream.JetStream, subject string, seq uint64) error {
	stream, err := js.Stream(ctx, StreamPoison)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return fmt.Errorf("pipeline: seq %d: %w (no %s stream)", seq, ErrNotPoisoned, StreamPoison)
	}
	if err != nil {
		return fmt.Errorf("pipeline: stream %s: %w", StreamPoison, err)
	}
	m, err := stream.GetMsg(ctx, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) || (err == nil && !subjectMatches(subject, m.Subject)) {
		return fmt.Errorf("pipeline: seq %d: %w on %s", seq, ErrNotPoisoned, subject)
	}
	if err != nil {
		return fmt.Errorf("pipeline: read poisoned event %d: %w", seq, err)
	}
	if err := stream.DeleteMsg(ctx, seq); err != nil {
		return fmt.Errorf("pipeline: drop poisoned event %d: %w", seq, err)
	}
	return nil
}

// subjectMatches reports whether subject matches filter (tokens, * and a final >).
func subjectMatches(filter, subject string) bool {
	f, s := strings.Split(filter, "."), strings.Split(subject, ".")
	for i, t := range f {
		if t == ">" {
			return len(s) > i
		}
		if i >= len(s) || (t != "*" && t != s[i]) {
			return false
		}
	}
	return len(f) == len(s)
}

// DeclarePoison creates or updates the POISON stream, retrying for up to 30 s (see Retry).
func DeclarePoison(ctx context.Context, js jetstream.JetStream, sc StorageConfig) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := Retry(ctx, func(ctx context.Context) error {
		_, err := js.CreateOrUpdateStream(ctx, PoisonStreamConfig(sc))
		return err
	}); err != nil {
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
		if m.UUID != "" {
			nm.Header.Set(MetaID, m.UUID) // the event id, also when the payload does not decode
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
