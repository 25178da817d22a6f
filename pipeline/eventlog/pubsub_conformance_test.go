package eventlog

import (
	"context"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wmjs "github.com/ThreeDotsLabs/watermill-nats/v2/pkg/jetstream"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/tests"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/pipeline/natsnode"
)

// TestWatermillConformance runs watermill's universal pub/sub suite against our
// JetStreamSubscriber (with watermill-nats' JetStream Publisher) on our embedded server.
//
// Consumers get a server-side AckWait of 5 s: a message handed to a subscriber that was closed
// before acking it is redelivered only after AckWait, and the suite does not wait 30 s.
func TestWatermillConformance(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv, err := natsnode.StartServer(ctx, natsnode.ServerConfig{Name: "conformance", JetStream: true, StoreDir: t.TempDir()})
	require.NoError(t, err)
	t.Cleanup(srv.Shutdown)

	const ackWait = 5 * time.Second
	log := watermill.NopLogger{}
	pubSub := func(t *testing.T, group string) (message.Publisher, message.Subscriber) {
		// Publisher.Close closes its connection: it gets one of its own.
		pc, err := srv.Connect("conformance-pub")
		require.NoError(t, err)
		// Not every subtest of the suite closes its publisher.
		t.Cleanup(pc.Close)
		sc, err := srv.Connect("conformance-sub")
		require.NoError(t, err)
		t.Cleanup(sc.Close)
		js, err := jetstream.New(sc)
		require.NoError(t, err)
		p, err := wmjs.NewPublisher(wmjs.PublisherConfig{Conn: pc, Logger: log})
		require.NoError(t, err)
		s, err := NewJetStreamSubscriber(js, SubscriberConfig{
			Consumer: func(topic string) (string, jetstream.ConsumerConfig) {
				// Without a group, a topic's subscribers share one durable consumer, so a
				// subscriber that replaces a closed one continues where it stopped.
				name := "watermill__" + group + "__" + topic
				return topic, jetstream.ConsumerConfig{Durable: name, AckPolicy: jetstream.AckExplicitPolicy, AckWait: ackWait}
			},
			NakDelay:  10 * time.Millisecond,
			Unmarshal: wmjs.DefaultUnmarshaler{}.Unmarshal,
		})
		require.NoError(t, err)
		return p, initializingSubscriber{s, js}
	}
	tests.TestPubSub(t,
		tests.Features{
			ConsumerGroups: true,
			// JetStream redelivers a message whose ack was lost or late: at least once.
			ExactlyOnceDelivery:                 false,
			GuaranteedOrder:                     true,
			GuaranteedOrderWithSingleSubscriber: true,
			Persistent:                          true,
			// A topic's subscribers share a durable consumer: a new one gets what is not
			// acked yet, not what another already consumed.
			NewSubscriberReceivesOldMessages: false,
			// One embedded server serves every subtest.
			RequireSingleInstance: true,
			// The server is in-process; TestReconnect is skipped.
			RestartServiceCommand: nil,
		},
		func(t *testing.T) (message.Publisher, message.Subscriber) { return pubSub(t, "") },
		pubSub,
	)
}

// initializingSubscriber creates a stream per topic, as the suite expects of a subscriber that
// implements SubscribeInitialize; jetmedia's own streams are declared by Declare instead.
type initializingSubscriber struct {
	*JetStreamSubscriber
	js jetstream.JetStream
}

func (s initializingSubscriber) SubscribeInitialize(topic string) error {
	_, err := s.js.CreateOrUpdateStream(context.Background(), jetstream.StreamConfig{Name: topic, Subjects: []string{topic}})
	return err
}
