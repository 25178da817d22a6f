package eventlog

import (
	"context"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/events"
	"github.com/jetmedia/jetmedia/pipeline/natsnode"
)

// Closing or cancelling the router while events are delivered must not crash the process, and
// no event may be lost: a later subscriber on the durable catches up to the head.
func TestEventSubscriberCloseUnderLoad(t *testing.T) {
	// Generous: the catch-up below runs until the durable has everything the writer wrote,
	// which took past a minute in a clean-clone CI run under -race.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	srv, err := natsnode.StartServer(ctx, natsnode.ServerConfig{Name: "close-load", JetStream: true, StoreDir: t.TempDir()})
	require.NoError(t, err)
	defer srv.Shutdown()
	nc, err := srv.Connect("writer")
	require.NoError(t, err)
	defer nc.Close()
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	require.NoError(t, Declare(ctx, js, StorageConfig{}))

	app := NewAppender(js, "n1")
	writeCtx, stopWriting := context.WithCancel(ctx)
	written := make(chan struct{})
	go func() {
		defer close(written)
		for writeCtx.Err() == nil {
			e, err := events.New(events.Meta{Room: "r", Node: "n1"}, events.PeerLeft{Peer: "p"})
			if err == nil {
				_, _ = app.Append(writeCtx, e)
			}
		}
	}()

	run := func(d time.Duration, cancelCtx bool) {
		sc, err := srv.Connect("projection")
		require.NoError(t, err)
		defer sc.Close() // the subscriber does not own its connection
		sub, err := NewEventSubscriber(sc, EventSubscriberConfig{Durable: "d", Filter: EventsSubjects, AckWait: 50 * time.Millisecond})
		require.NoError(t, err)
		r, err := NewRouter(nil)
		require.NoError(t, err)
		r.AddConsumerHandler("d", EventsSubjects, sub, func(*message.Message) error { return nil })
		rctx, rcancel := context.WithCancel(ctx)
		defer rcancel()
		done := make(chan error, 1)
		go func() { done <- r.Run(rctx) }()
		select {
		case <-r.Running():
		case err := <-done:
			// Run may end before it was ever running (its subscription refused under load);
			// then there is nothing to close, and waiting on Running would hang.
			require.NoError(t, err)
			return
		}
		time.Sleep(d)
		if cancelCtx {
			rcancel()
		} else {
			require.NoError(t, r.Close())
		}
		require.NoError(t, <-done)
	}
	for i := range 40 {
		run(time.Duration(2+i%8)*time.Millisecond, i%2 == 0)
	}
	stopWriting()
	<-written

	head, err := app.LastSeq(ctx, "r")
	require.NoError(t, err)
	c, err := js.Consumer(ctx, StreamEvents, "d")
	require.NoError(t, err)
	caughtUp := func() bool {
		info, err := c.Info(ctx)
		return err == nil && info.AckFloor.Stream == head
	}
	for !caughtUp() {
		run(time.Second, false)
	}
}
