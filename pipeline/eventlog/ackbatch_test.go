package eventlog_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/pipeline/eventlog"
)

// TestAckBatch: a subscriber with AckBatch marks each batch's last message, acknowledges
// nothing to JetStream before the handler has acked that one, and a new subscriber of the
// durable starts again at the ack floor, not behind newer messages.
func TestAckBatch(t *testing.T) {
	n := start(t)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	for i := range 6 {
		_, err := n.js.Publish(ctx, eventlog.EventSubject("r", "peer_joined"), []byte(strconv.Itoa(i+1)))
		require.NoError(t, err)
	}
	nc, err := n.srv.Connect("batch")
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	cfg := eventlog.EventSubscriberConfig{Durable: "batch", Filter: eventlog.EventsSubjects, AckBatch: 4, MaxAckPending: 8}
	subscribe := func() (*eventlog.JetStreamSubscriber, <-chan *message.Message) {
		sub, err := eventlog.NewEventSubscriber(nc, cfg)
		require.NoError(t, err)
		msgs, err := sub.Subscribe(ctx, "events")
		require.NoError(t, err)
		return sub, msgs
	}
	ackFloor := func() uint64 {
		c, err := n.js.Consumer(ctx, eventlog.StreamEvents, "batch")
		require.NoError(t, err)
		info, err := c.Info(ctx)
		require.NoError(t, err)
		return info.AckFloor.Stream
	}
	next := func(msgs <-chan *message.Message, seq, end string) *message.Message {
		select {
		case m := <-msgs:
			require.Equal(t, seq, m.Metadata.Get(eventlog.MetaSeq))
			require.Equal(t, end, m.Metadata.Get(eventlog.MetaBatchEnd), "batch end of seq %s", seq)
			return m
		case <-ctx.Done():
			t.Fatalf("no message %s", seq)
			return nil
		}
	}

	sub, msgs := subscribe()
	for _, seq := range []string{"1", "2", "3"} {
		next(msgs, seq, "0").Ack()
	}
	last := next(msgs, "4", "1") // AckBatch messages: the batch ends
	require.Zero(t, ackFloor(), "acked by the handler, not yet to JetStream")
	last.Ack()
	next(msgs, "5", "0").Ack() // held: the newest (6) ends the next batch
	require.Eventually(t, func() bool { return ackFloor() == 4 }, 10*time.Second, 10*time.Millisecond)
	next(msgs, "6", "1") // not acked: the node stops here
	require.NoError(t, sub.Close())

	// 5 was acked by the handler but held, 6 never acked: both come again, in order, at once
	// (not after AckWait, behind newer events).
	_, err = n.js.Publish(ctx, eventlog.EventSubject("r", "peer_joined"), []byte("7"))
	require.NoError(t, err)
	sub, msgs = subscribe()
	defer func() { require.NoError(t, sub.Close()) }()
	next(msgs, "5", "0").Ack()
	next(msgs, "6", "0").Ack()
	next(msgs, "7", "1").Ack()
	require.Eventually(t, func() bool { return ackFloor() == 7 }, 10*time.Second, 10*time.Millisecond)
}
