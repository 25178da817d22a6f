package tests

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/tests/rtcclient"
)

// joinEvent is all an outside consumer needs of an event: it reads the JSON, not jetmedia's
// Go types.
type joinEvent struct {
	ID    string    `json:"id"`
	Type  string    `json:"type"`
	Room  string    `json:"room"`
	Actor string    `json:"actor"`
	Time  time.Time `json:"time"`
	Data  struct {
		Peer      string `json:"peer"`
		Transport string `json:"transport"`
	} `json:"data"`
}

// watchJoins is the worked example of docs/consumers.md: an analytics consumer written with
// nats.go alone. A durable consumer named "joins-counter" reads every room's peer.joined
// events from the start, and resumes where it stopped after a restart.
func watchJoins(ctx context.Context, url string, seen func(joinEvent)) error {
	nc, err := nats.Connect(url)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	c, err := js.CreateOrUpdateConsumer(ctx, "EVENTS", jetstream.ConsumerConfig{
		Durable:       "joins-counter",
		FilterSubject: "ev.*.peer_joined",
		AckPolicy:     jetstream.AckExplicitPolicy,
	})
	if err != nil {
		return err
	}
	cc, err := c.Consume(func(m jetstream.Msg) {
		var e joinEvent
		if err := json.Unmarshal(m.Data(), &e); err != nil {
			_ = m.Term() // not an event: never redeliver it
			return
		}
		seen(e)
		_ = m.Ack()
	})
	if err != nil {
		return err
	}
	<-ctx.Done()
	cc.Stop()
	return nil
}

// TestOutsideConsumer runs the worked example against a node that opens its NATS port, as an
// outside analytics program would.
func TestOutsideConsumer(t *testing.T) {
	cfg := nodeConfig(t, "outside")
	cfg.NATSListen = "127.0.0.1:0"
	node := startNode(t, cfg)
	room := newRoom("outside")
	ctx := ctxT(t, 30*time.Second)

	pub, err := rtcclient.Publish(ctx, clientAPI(t), node.HTTPURL(), room, asPublisher(t, room))
	require.NoError(t, err)
	defer pub.Close(true)

	got := make(chan joinEvent, 16)
	wctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- watchJoins(wctx, node.Server().ClientURL(), func(e joinEvent) { got <- e }) }()
	select {
	case e := <-got:
		require.Equal(t, "peer.joined.v1", e.Type)
		require.Equal(t, room, e.Room)
		require.Equal(t, "whip", e.Data.Transport)
		require.Equal(t, publisherIdentity, e.Actor, fmt.Sprintf("%+v", e))
	case <-time.After(10 * time.Second):
		t.Fatal("the outside consumer saw no peer.joined event")
	}
	stop()
	require.NoError(t, <-done)
}
