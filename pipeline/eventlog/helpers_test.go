package eventlog_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/events"
	"github.com/jetmedia/jetmedia/pipeline/eventlog"
	"github.com/jetmedia/jetmedia/pipeline/natsnode"
)

type node struct {
	srv *natsnode.Server
	js  jetstream.JetStream
}

// start runs a real embedded server with JetStream in a temporary directory, connects to it
// and declares the stream and bucket.
func start(t testing.TB) node {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv, err := natsnode.StartServer(ctx, natsnode.ServerConfig{Name: "pipeline-test", JetStream: true, StoreDir: t.TempDir()})
	require.NoError(t, err)
	t.Cleanup(srv.Shutdown)
	return node{srv: srv, js: connect(t, srv, "test")}
}

func connect(t testing.TB, srv *natsnode.Server, name string) jetstream.JetStream {
	t.Helper()
	nc, err := srv.Connect(name)
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	require.NoError(t, eventlog.Declare(context.Background(), js, eventlog.StorageConfig{}))
	return js
}

var t0 = time.Date(2026, 11, 3, 10, 0, 0, 0, time.UTC)

func joined(t testing.TB, room, peer string) events.Envelope {
	t.Helper()
	e, err := events.New(events.Meta{Room: room, Actor: peer, Node: "n1", Time: t0}, events.PeerJoined{Peer: peer, Transport: "whip", Role: "publisher", Node: "n1"})
	require.NoError(t, err)
	return e
}

// readRoom returns every stored event of room, in log order.
func readRoom(t testing.TB, js jetstream.JetStream, room string) []events.Envelope {
	t.Helper()
	var out []events.Envelope
	err := eventlog.Read(context.Background(), js, eventlog.ReadOptions{Filter: eventlog.RoomEventsFilter(room)}, func(e events.Envelope) error {
		out = append(out, e)
		return nil
	})
	require.NoError(t, err)
	return out
}

func ids(evs []events.Envelope) []string {
	out := make([]string, len(evs))
	for i, e := range evs {
		out[i] = e.ID
	}
	return out
}

func types(evs []events.Envelope) []string {
	out := make([]string, len(evs))
	for i, e := range evs {
		out[i] = e.Type
	}
	return out
}
