package pipeline

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wmjs "github.com/ThreeDotsLabs/watermill-nats/v2/pkg/jetstream"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/tests"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
)

// TestWatermillConformance runs watermill's universal pub/sub suite against watermill-nats'
// JetStream Publisher and Subscriber on our embedded server, over in-process connections and
// with the close-race workaround the event subscriber uses (closeSafeConsumer).
//
// Consumers get a server-side AckWait equal to the subscriber's (1 s). With the server default
// (30 s), a message handed to a subscriber that was closed before acking it is redelivered only
// after 30 s, longer than the suite waits: TestConsumerGroups then fails about one run in eight.
func TestWatermillConformance(t *testing.T) {
	skipUnderRace(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv, err := StartServer(ctx, ServerConfig{Name: "conformance", JetStream: true, StoreDir: t.TempDir()})
	require.NoError(t, err)
	t.Cleanup(srv.Shutdown)

	const ackWait = time.Second
	initializer := func(group string) wmjs.ResourceInitializer {
		return func(ctx context.Context, js jetstream.JetStream, topic string) (jetstream.Consumer, func(context.Context, watermill.LoggerAdapter), error) {
			name := "watermill__" + group + "__" + topic
			if group == "" {
				name = "watermill__" + watermill.NewShortUUID()
			}
			c, err := js.CreateOrUpdateConsumer(ctx, topic, jetstream.ConsumerConfig{Name: name, AckPolicy: jetstream.AckExplicitPolicy, AckWait: ackWait})
			if err != nil {
				return nil, nil, fmt.Errorf("consumer %s: %w", name, err)
			}
			if group != "" {
				return closeSafeConsumer{c}, nil, nil // a group outlives its members
			}
			return closeSafeConsumer{c}, func(ctx context.Context, log watermill.LoggerAdapter) {
				if err := js.DeleteConsumer(context.WithoutCancel(ctx), topic, name); err != nil {
					log.Error("delete consumer", err, nil)
				}
			}, nil
		}
	}
	log := watermill.NopLogger{}
	// Publisher.Close closes its connection and Subscriber.Close drains its own: each gets one.
	pubSub := func(t *testing.T, group string) (message.Publisher, message.Subscriber) {
		pc, err := srv.Connect("conformance-pub")
		require.NoError(t, err)
		sc, err := srv.Connect("conformance-sub")
		require.NoError(t, err)
		p, err := wmjs.NewPublisher(wmjs.PublisherConfig{Conn: pc, Logger: log})
		require.NoError(t, err)
		s, err := wmjs.NewSubscriber(wmjs.SubscriberConfig{Conn: sc, Logger: log, AckWaitTimeout: ackWait, ResourceInitializer: initializer(group)})
		require.NoError(t, err)
		return p, s
	}
	tests.TestPubSub(t,
		tests.Features{
			ConsumerGroups: true,
			// JetStream redelivers a message whose ack was lost or late: at least once.
			ExactlyOnceDelivery:                 false,
			GuaranteedOrder:                     true,
			GuaranteedOrderWithSingleSubscriber: true,
			Persistent:                          true,
			NewSubscriberReceivesOldMessages:    true,
			// One embedded server serves every subtest.
			RequireSingleInstance: true,
			// The server is in-process; TestReconnect is skipped.
			RestartServiceCommand: nil,
		},
		func(t *testing.T) (message.Publisher, message.Subscriber) { return pubSub(t, "") },
		pubSub,
	)
}
