package eventlog

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetmedia/jetmedia/events"
)

// ReadOptions selects which events Read and Follow deliver.
type ReadOptions struct {
	// Filter is a subject filter: EventsSubjects for all rooms, RoomEventsFilter(room) for one.
	Filter string
	// FromSeq starts at this stream sequence (1 = from the start). 0 means "new events only"
	// for Follow and "from the start" for Read.
	FromSeq uint64
}

// Read delivers the stored events that match opts in log order, up to the head as it was when
// Read started, then returns. fn returning an error stops the read with that error.
func Read(ctx context.Context, js jetstream.JetStream, opts ReadOptions, fn func(events.Envelope) error) error {
	return ReadStored(ctx, js, opts, func(st StoredEvent) error {
		e, err := events.Decode(st.Data)
		if err != nil {
			return fmt.Errorf("pipeline: stored event on %s: %w", st.Subject, err)
		}
		e.Seq = st.Seq
		return fn(e)
	})
}

// StoredEvent is one event as stored: its stream sequence, subject and exact bytes (what the
// hash chain covers), undecoded.
type StoredEvent struct {
	Seq     uint64
	Subject string
	// Data is the message payload; it is only valid during the callback.
	Data []byte
	// Source names the stream the event was copied from (an edge's log the region sources:
	// the first word of the message's Nats-Stream-Source header, which JetStream sets on
	// every sourced message); "" for an event appended to this log.
	Source string
}

// SourceHeader is the header JetStream puts on a message it copied from another stream
// (nats-server's JSStreamSource): the source's identity, then the message's sequence there.
const SourceHeader = "Nats-Stream-Source"

// sourceOf returns the identity of the stream msg was copied from ("" when it was not).
func sourceOf(msg jetstream.Msg) string {
	h := msg.Headers().Get(SourceHeader)
	if i := strings.IndexByte(h, ' '); i >= 0 {
		return h[:i]
	}
	return h
}

// ReadStored is Read without decoding: it delivers each stored event's sequence and bytes, up to
// the head as it was when ReadStored started. It is for tools that check the bytes themselves
// (the audit chain) and for readers that decode only what they need.
func ReadStored(ctx context.Context, js jetstream.JetStream, opts ReadOptions, fn func(StoredEvent) error) error {
	stream, err := js.Stream(ctx, StreamEvents)
	if err != nil {
		return fmt.Errorf("pipeline: stream %s: %w", StreamEvents, err)
	}
	last, err := stream.GetLastMsgForSubject(ctx, opts.Filter)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("pipeline: head of %s: %w", opts.Filter, err)
	}
	if opts.FromSeq == 0 {
		opts.FromSeq = 1
	}
	if opts.FromSeq > last.Sequence {
		return nil
	}
	return consume(ctx, js, opts, func(msg jetstream.Msg) (bool, error) {
		md, err := msg.Metadata()
		if err != nil {
			return false, fmt.Errorf("pipeline: stored event on %s metadata: %w", msg.Subject(), err)
		}
		seq := md.Sequence.Stream
		if err := fn(StoredEvent{Seq: seq, Subject: msg.Subject(), Data: msg.Data(), Source: sourceOf(msg)}); err != nil {
			return false, err
		}
		return seq < last.Sequence, nil
	})
}

// Follow delivers matching events as they are stored until ctx ends or fn returns an error.
func Follow(ctx context.Context, js jetstream.JetStream, opts ReadOptions, fn func(events.Envelope) error) error {
	err := consume(ctx, js, opts, func(msg jetstream.Msg) (bool, error) {
		e, err := DecodeStored(msg)
		if err != nil {
			return false, err
		}
		return true, fn(e)
	})
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// readHeartbeat is how often the server tells a reader's pull it is alive.
const readHeartbeat = time.Second

func consume(ctx context.Context, js jetstream.JetStream, opts ReadOptions, fn func(jetstream.Msg) (bool, error)) error {
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: []string{opts.Filter}}
	if opts.FromSeq == 0 {
		cfg.DeliverPolicy = jetstream.DeliverNewPolicy
	} else {
		cfg.DeliverPolicy = jetstream.DeliverByStartSequencePolicy
		cfg.OptStartSeq = opts.FromSeq
	}
	c, err := js.OrderedConsumer(ctx, StreamEvents, cfg)
	if err != nil {
		return fmt.Errorf("pipeline: read %s: %w", opts.Filter, err)
	}
	// A pull whose messages never come (seen on a loaded machine: the read of a few events
	// stalled) is noticed by a missing heartbeat, and the ordered consumer is then recreated
	// after the last message it delivered. nats.go's default heartbeat is 5 s, noticed after
	// 10 s: a read could stall that long; with 1 s it recovers within ~2 s.
	it, err := c.Messages(jetstream.PullMaxMessages(512), jetstream.PullHeartbeat(readHeartbeat))
	if err != nil {
		return fmt.Errorf("pipeline: read %s: %w", opts.Filter, err)
	}
	defer it.Stop()
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()
	for {
		msg, err := it.Next()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("pipeline: read %s: %w", opts.Filter, err)
		}
		more, err := fn(msg)
		if err != nil || !more {
			return err
		}
	}
}

// DecodeStored decodes a stored event and fills in its stream sequence.
func DecodeStored(msg jetstream.Msg) (events.Envelope, error) {
	e, err := events.Decode(msg.Data())
	if err != nil {
		return e, fmt.Errorf("pipeline: stored event on %s: %w", msg.Subject(), err)
	}
	md, err := msg.Metadata()
	if err != nil {
		return e, fmt.Errorf("pipeline: stored event %s metadata: %w", e.ID, err)
	}
	e.Seq = md.Sequence.Stream
	return e, nil
}
