package pipeline_test

import (
	"context"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wmjs "github.com/ThreeDotsLabs/watermill-nats/v2/pkg/jetstream"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/tests"
	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/pipeline"
)

// TestWatermillConformance runs watermill's universal pub/sub suite against watermill-nats'
// JetStream Publisher and Subscriber on our embedded server, over its in-process connections,
// the way the event router uses them.
func TestWatermillConformance(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv, err := pipeline.StartServer(ctx, pipeline.ServerConfig{Name: "conformance", JetStream: true, StoreDir: t.TempDir()})
	require.NoError(t, err)
	t.Cleanup(srv.Shutdown)

	log := watermill.NewSlogLogger(slog.New(slog.DiscardHandler))
	if os.Getenv("JETMEDIA_TEST_LOG") == "1" {
		log = watermill.NewSlogLogger(slog.Default())
	}
	// Publisher.Close closes its connection and Subscriber.Close drains its own, so each gets a
	// fresh one.
	pubSub := func(t *testing.T, init wmjs.ResourceInitializer) (message.Publisher, message.Subscriber) {
		pc, err := srv.Connect("conformance-pub")
		require.NoError(t, err)
		sc, err := srv.Connect("conformance-sub")
		require.NoError(t, err)
		p, err := wmjs.NewPublisher(wmjs.PublisherConfig{Conn: pc, Logger: log})
		require.NoError(t, err)
		s, err := wmjs.NewSubscriber(wmjs.SubscriberConfig{Conn: sc, Logger: log, AckWaitTimeout: time.Second, ResourceInitializer: init})
		require.NoError(t, err)
		return p, s
	}
	tests.TestPubSub(t,
		tests.Features{
			ConsumerGroups: true,
			// JetStream redelivers an event whose ack was lost or late: at least once.
			ExactlyOnceDelivery:                 false,
			GuaranteedOrder:                     true,
			GuaranteedOrderWithSingleSubscriber: true,
			Persistent:                          true,
			NewSubscriberReceivesOldMessages:    true,
			// One embedded server is shared by every subtest.
			RequireSingleInstance: true,
			// No broker restart command: the server is in-process.
			RestartServiceCommand: nil,
			ForceShort:            testing.Short(),
		},
		func(t *testing.T) (message.Publisher, message.Subscriber) { return pubSub(t, nil) },
		func(t *testing.T, group string) (message.Publisher, message.Subscriber) {
			return pubSub(t, wmjs.GroupedConsumer(group))
		},
	)
}
