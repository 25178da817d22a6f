package eventlog

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// BatchHandler handles one batch of stored events, in log order. When it returns nil the batch
// is acknowledged; otherwise the same batch is handed over again after a pause, before any
// event after it. The events' Data is valid until the handler returns.
type BatchHandler func(ctx context.Context, batch []StoredEvent) error

// BatchConsumerConfig describes a durable consumer of the event log that hands its events
// over in batches.
type BatchConsumerConfig struct {
	// Durable is the consumer's name; its ack floor is the handler's checkpoint.
	Durable string
	// Filter is the subject filter, e.g. EventsSubjects.
	Filter string
	// StartSeq, if not 0, is where a new consumer starts (default: the start of the log). It
	// does not move an existing durable.
	StartSeq uint64
	// Batch is the most events handed over at once (default DefaultBatch). A batch ends
	// earlier at the newest event the server had to deliver, so at low rates batches are
	// small and nothing waits for a batch to fill.
	Batch int
	// AckWait is how long an event may stay unacknowledged before redelivery (default 10 s);
	// the events of a batch whose handling keeps failing are kept in progress meanwhile.
	AckWait time.Duration
	// RetryDelay is the first pause before a failed batch is handed over again (default
	// 50 ms); it doubles up to 5 s.
	RetryDelay time.Duration
	// Gapless says the filter takes every subject of the stream (EventsSubjects on EVENTS,
	// which denies deletes), so its events come with consecutive stream sequences, apart from
	// those the log's limits removed. An event after a sequence never handed over is then
	// known to be out of order: JetStream redelivers a message it handed out and lost (with a
	// consumer leader that died, say) only after AckWait, behind the newer ones, and a fold
	// that saw the newer ones skips it as a redelivery. The missing events are read from the
	// stream by sequence and handed over first, in order; their redelivery later is a no-op.
	Gapless bool
	Logger  *slog.Logger
}

// DefaultBatch is BatchConsumerConfig.Batch's default.
const DefaultBatch = 512

// BatchConsumer hands a durable consumer's events to a BatchHandler in batches: one
// hand-over and one write of what was folded per batch, not per event. It replaces the
// per-message path (JetStream subscriber → watermill router → handler → ack) where the
// projection has to keep pace with the log: that path handed events over one at a time
// through three goroutines and capped the rooms projection near 2.4k events/s.
//
// It has the consumer of NewEventSubscriber with AckBatch = Batch (explicit acks,
// MaxAckPending 2 × Batch), so a durable made by either can be run by the other.
type BatchConsumer struct {
	js  jetstream.JetStream
	cfg BatchConsumerConfig
	log *slog.Logger
	// consumer is set by Declare, before Run's loop (Declare and Run are not concurrent).
	consumer jetstream.Consumer
	// last is the stream sequence of the newest event handled (Gapless), owned by Run.
	last uint64
}

// NewBatchConsumer validates cfg and returns a consumer reading through js. It does not own
// js's connection.
func NewBatchConsumer(js jetstream.JetStream, cfg BatchConsumerConfig) (*BatchConsumer, error) {
	if cfg.Durable == "" || cfg.Filter == "" {
		return nil, errors.New("pipeline: batch consumer needs a durable name and a filter")
	}
	if cfg.Batch == 0 {
		cfg.Batch = DefaultBatch
	}
	if cfg.Batch < 0 {
		return nil, fmt.Errorf("pipeline: batch consumer %s: batch %d is negative", cfg.Durable, cfg.Batch)
	}
	if cfg.AckWait == 0 {
		cfg.AckWait = 10 * time.Second
	}
	if cfg.RetryDelay <= 0 {
		cfg.RetryDelay = 50 * time.Millisecond
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &BatchConsumer{js: js, cfg: cfg, log: log.With("component", "batch-consumer", "consumer", cfg.Durable)}, nil
}

// consumerConfig is the durable's declaration.
func (c *BatchConsumer) consumerConfig() jetstream.ConsumerConfig {
	cc := jetstream.ConsumerConfig{
		Durable:       c.cfg.Durable,
		FilterSubject: c.cfg.Filter,
		AckPolicy:     jetstream.AckExplicitPolicy,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		MaxAckPending: 2 * c.cfg.Batch,
		AckWait:       c.cfg.AckWait,
		MaxDeliver:    -1,
	}
	if c.cfg.StartSeq > 0 {
		cc.DeliverPolicy = jetstream.DeliverByStartSequencePolicy
		cc.OptStartSeq = c.cfg.StartSeq
	}
	return cc
}

// Run consumes until ctx ends (then nil) or the consumer cannot be set up. Run it once at a
// time. Events handed over
// but not acknowledged when it returns are delivered again from the ack floor on the next Run.
func (c *BatchConsumer) Run(ctx context.Context, handle BatchHandler) error {
	for {
		err := c.runOnce(ctx, handle)
		if ctx.Err() != nil {
			return nil
		}
		if !errors.Is(err, jetstream.ErrConsumerDeleted) {
			return err
		}
		// Deleted under us (an operator, a cleanup): declare it again and go on; the events
		// it hands over again are no-ops for a fold with sequence checkpoints.
		c.log.Warn("consumer deleted; declaring it again", "err", err)
		c.consumer = nil
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(c.cfg.RetryDelay):
		}
	}
}

// runOnce consumes from the declared durable until ctx ends or its pull fails for good.
func (c *BatchConsumer) runOnce(ctx context.Context, handle BatchHandler) error {
	if err := c.Declare(ctx); err != nil {
		return err
	}
	// A 5 s pull expiry, as the subscriber's: a lost pull request is noticed within seconds.
	// A 1 s heartbeat: a pull request lost with a consumer leader that died is noticed in 2 s
	// (the default, half the expiry, took 5 s after a kill).
	it, err := c.consumer.Messages(jetstream.PullMaxMessages(2*c.cfg.Batch), jetstream.PullExpiry(pullExpiry),
		jetstream.PullHeartbeat(time.Second))
	if err != nil {
		return fmt.Errorf("pipeline: consume %s: %w", c.cfg.Durable, err)
	}
	defer it.Stop()
	stop := context.AfterFunc(ctx, it.Stop) // unblocks Next
	defer stop()
	msgs := make([]jetstream.Msg, 0, c.cfg.Batch)
	batch := make([]StoredEvent, 0, c.cfg.Batch)
	for {
		if msgs, err = c.next(ctx, it, msgs[:0]); err != nil {
			return err
		}
		batch = batch[:0]
		last := c.last
		for _, m := range msgs {
			st, err := storedEvent(m)
			if err != nil {
				// Without its sequence the event cannot be checkpointed; no retry changes that.
				c.log.Error("skipping event without metadata", "subject", m.Subject(), "err", err)
				continue
			}
			if c.missed(ctx, last, st.Seq) {
				if batch, err = c.readMissing(ctx, batch, last+1, st.Seq); err != nil {
					return ctx.Err()
				}
			}
			batch = append(batch, st)
			last = max(last, st.Seq)
		}
		if len(batch) > 0 && !c.handle(ctx, handle, batch, msgs) {
			return ctx.Err()
		}
		c.last = last
		for _, m := range msgs {
			// A plain ack, not a double ack: a lost ack means one redelivery, which a fold
			// with sequence checkpoints ignores.
			if err := m.Ack(); err != nil {
				c.log.Warn("ack failed; the event will be redelivered", "err", err)
			}
		}
		// Drop the references to the messages' buffers before reuse: a batch smaller than the
		// largest one so far would leave the tail's events (their payloads and subjects) alive
		// for good, pinning the heap spans they were allocated in (issue 12).
		clear(msgs)
		clear(batch)
	}
}

// missed reports whether an event of sequence seq, after last, comes after one never handed
// over (Gapless): a sequence skipped that the log still holds.
func (c *BatchConsumer) missed(ctx context.Context, last, seq uint64) bool {
	if !c.cfg.Gapless || last == 0 || seq <= last+1 {
		return false
	}
	s, err := c.js.Stream(ctx, StreamEvents)
	return err != nil || s.CachedInfo().State.FirstSeq < seq
}

// readMissing appends the stored events from..to-1 to batch, read from the stream by sequence
// (those the log's limits removed meanwhile are skipped), asking again after a failed read
// until ctx ends (then the error).
func (c *BatchConsumer) readMissing(ctx context.Context, batch []StoredEvent, from, to uint64) ([]StoredEvent, error) {
	c.log.Warn("events were not handed over; reading them from the log", "from_seq", from, "to_seq", to-1)
	delay := c.cfg.RetryDelay
	for seq := from; seq < to; {
		st, err := c.readOne(ctx, seq)
		switch {
		case errors.Is(err, jetstream.ErrMsgNotFound):
			seq++
		case err == nil:
			batch = append(batch, st)
			seq++
		default:
			c.log.Warn("reading a missing event failed; trying again", "seq", seq, "err", err, "retry_in", delay)
			select {
			case <-ctx.Done():
				return batch, ctx.Err()
			case <-time.After(delay):
			}
			delay = min(2*delay, 5*time.Second)
		}
	}
	return batch, nil
}

// readOne reads the stored event of sequence seq at the stream's leader: a replica behind it
// (a direct get may be answered by any) would report an event stored a moment ago as not
// found, and the event would be skipped as one the log's limits removed.
func (c *BatchConsumer) readOne(ctx context.Context, seq uint64) (StoredEvent, error) {
	st, ok, err := ReadAtLeader(ctx, c.js, seq)
	if err != nil {
		return StoredEvent{}, err
	}
	if !ok {
		return StoredEvent{}, jetstream.ErrMsgNotFound
	}
	return st, nil
}

// Declare creates the durable, or recreates it at its ack floor if its last reader left
// events unacknowledged, unless done before. Run declares it too; a caller that needs the
// consumer to exist when it goes on (its lag is read at once) declares it first.
func (c *BatchConsumer) Declare(ctx context.Context) error {
	if c.consumer != nil {
		return nil
	}
	ccfg, err := resumeAtAckFloor(ctx, c.js, c.log, StreamEvents, c.consumerConfig())
	if err != nil {
		return err
	}
	consumer, err := c.js.CreateOrUpdateConsumer(ctx, StreamEvents, ccfg)
	if err != nil {
		return fmt.Errorf("pipeline: consumer %s: %w", c.cfg.Durable, err)
	}
	c.consumer = consumer
	return nil
}

// next fills msgs with the next batch: at least one event, then more while the server says it
// has more to deliver or the client holds more already, up to Batch.
//
// The server's NumPending alone does not fill a batch while the handler is slower than the
// appends: each event is pushed to the open pull request as it is stored, with nothing pending
// behind it, so every batch was one event while many waited in the client's buffer. Under
// -race on the loaded 2-core machine a batch's KV writes took 0.2-0.8 s, so one event per
// batch fell behind a room appending 20 events/s, and the rooms bucket lagged the log by 10 s
// and more before any node died (TestKillStreamLeader's lag probe).
func (c *BatchConsumer) next(ctx context.Context, it jetstream.MessagesContext, msgs []jetstream.Msg) ([]jetstream.Msg, error) {
	more := true // the server has more to deliver: wait for it
	for len(msgs) < c.cfg.Batch {
		var m jetstream.Msg
		var err error
		if more {
			m, err = it.Next()
		} else {
			m, err = it.Next(jetstream.NextMaxWait(bufferedWait))
			if errors.Is(err, nats.ErrTimeout) {
				break // nothing more buffered
			}
		}
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, jetstream.ErrMsgIteratorClosed) || errors.Is(err, jetstream.ErrConsumerDeleted) {
				return msgs, fmt.Errorf("pipeline: consume %s: %w", c.cfg.Durable, err)
			}
			c.log.Warn("pull failed; retrying", "err", err)
			select { // not a busy loop when the pull keeps failing
			case <-ctx.Done():
			case <-time.After(c.cfg.RetryDelay):
			}
			continue
		}
		msgs = append(msgs, m)
		md, err := m.Metadata()
		more = err == nil && md.NumPending > 0
	}
	return msgs, nil
}

// pullExpiry is how long a pull request of the consumer stays open at the server.
const pullExpiry = 5 * time.Second

// bufferedWait is how long a batch waits for a further event once the server has none pending:
// long enough to take what the client has buffered, short enough not to delay a lone event.
const bufferedWait = time.Millisecond

// handle runs the handler until it accepts the batch; false when ctx ended first.
func (c *BatchConsumer) handle(ctx context.Context, fn BatchHandler, batch []StoredEvent, msgs []jetstream.Msg) bool {
	delay := c.cfg.RetryDelay
	for {
		err := fn(ctx, batch)
		if err == nil {
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		c.log.Warn("batch failed; handing it over again", "events", len(batch), "first_seq", batch[0].Seq, "retry_in", delay, "err", err)
		// Keep the batch ours meanwhile: no redelivery of it behind the events after it.
		for _, m := range msgs {
			_ = m.InProgress()
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(delay):
		}
		delay = min(2*delay, 5*time.Second)
	}
}

func storedEvent(m jetstream.Msg) (StoredEvent, error) {
	md, err := m.Metadata()
	if err != nil {
		return StoredEvent{}, err
	}
	return StoredEvent{Seq: md.Sequence.Stream, Subject: m.Subject(), Data: m.Data()}, nil
}
