package natsnode_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/pipeline/eventlog"
	"github.com/jetmedia/jetmedia/pipeline/natsnode"
)

// startOpen runs a server with JetStream and a client port, the stream and bucket declared,
// and one event stored by the node.
func startOpen(t *testing.T, auth natsnode.AuthConfig) (*natsnode.Server, jetstream.JetStream) {
	t.Helper()
	srv, err := natsnode.StartServer(t.Context(), natsnode.ServerConfig{Name: "auth-test", JetStream: true,
		StoreDir: t.TempDir(), Listen: "127.0.0.1:0", Auth: auth})
	require.NoError(t, err)
	t.Cleanup(srv.Shutdown)
	nc, err := srv.Connect("node")
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	require.NoError(t, eventlog.Declare(t.Context(), js, eventlog.StorageConfig{}))
	_, err = js.Publish(t.Context(), eventlog.EventSubject("r", "peer_joined"), []byte(`{"by":"node"}`))
	require.NoError(t, err, "the node writes the log")
	return srv, js
}

// refusedWrites tries what only the node may do, as js's user: append to the log, write the
// rooms or the snapshots bucket, delete the stream. Each is refused and nothing is stored.
func refusedWrites(t *testing.T, js, node jetstream.JetStream) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	try := func() context.Context {
		c, cancel := context.WithTimeout(ctx, time.Second)
		t.Cleanup(cancel)
		return c
	}
	_, err := js.Publish(try(), eventlog.EventSubject("r", "peer_joined"), []byte(`{"by":"outsider"}`))
	require.Error(t, err, "an outside append is refused")
	_, err = js.PublishMsg(try(), &nats.Msg{Subject: "ev.r.peer_left", Data: []byte("{}")})
	require.Error(t, err)
	kv, err := js.KeyValue(ctx, eventlog.BucketRooms)
	require.NoError(t, err, "a reader may open the bucket")
	_, err = kv.Put(try(), "r.room", []byte(`{"forged":true}`))
	require.Error(t, err, "an outside KV write is refused")
	snaps, err := js.KeyValue(ctx, eventlog.BucketSnapshots)
	require.NoError(t, err, "a reader may open the snapshots")
	_, err = snaps.Put(try(), "r.00000000000000000001.0", []byte(`{"forged":true}`))
	require.Error(t, err, "an outside snapshot is refused")
	require.Error(t, js.DeleteStream(try(), eventlog.StreamEvents))
	require.Error(t, js.DeleteKeyValue(try(), eventlog.BucketRooms))
	_, err = js.CreateStream(try(), jetstream.StreamConfig{Name: "MINE", Subjects: []string{"mine.>"}})
	require.Error(t, err)

	st, err := node.Stream(ctx, eventlog.StreamEvents)
	require.NoError(t, err)
	info, err := st.Info(ctx)
	require.NoError(t, err)
	require.Equal(t, uint64(1), info.State.Msgs, "only the node's event is stored")
	nkv, err := node.KeyValue(ctx, eventlog.BucketRooms)
	require.NoError(t, err)
	_, err = nkv.Get(ctx, "r.room")
	require.ErrorIs(t, err, jetstream.ErrKeyNotFound)
	nsnaps, err := node.KeyValue(ctx, eventlog.BucketSnapshots)
	require.NoError(t, err)
	_, err = nsnaps.Get(ctx, "r.00000000000000000001.0")
	require.ErrorIs(t, err, jetstream.ErrKeyNotFound)
}

// readsEvents shows a reader can still consume: a durable consumer of its own, a fetch, an
// ack, and the bucket's keys.
func readsEvents(t *testing.T, js jetstream.JetStream) {
	t.Helper()
	ctx := t.Context()
	c, err := js.CreateOrUpdateConsumer(ctx, eventlog.StreamEvents, jetstream.ConsumerConfig{
		Durable: "analytics", FilterSubject: eventlog.EventsSubjects, AckPolicy: jetstream.AckExplicitPolicy})
	require.NoError(t, err)
	batch, err := c.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
	require.NoError(t, err)
	var got []string
	for m := range batch.Messages() {
		got = append(got, string(m.Data()))
		require.NoError(t, m.DoubleAck(ctx))
	}
	require.NoError(t, batch.Error())
	require.Equal(t, []string{`{"by":"node"}`}, got)
	info, err := c.Info(ctx)
	require.NoError(t, err)
	require.Equal(t, uint64(1), info.AckFloor.Stream)
}

func dial(t *testing.T, url string, opts ...nats.Option) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(url, opts...)
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	return js
}

// TestOutsideClientsOnlyRead: a client without credentials, and the reader with them, may
// read and consume the log but not append to it or write the bucket.
func TestOutsideClientsOnlyRead(t *testing.T) {
	srv, node := startOpen(t, natsnode.AuthConfig{})
	anon := dial(t, srv.ClientURL())
	refusedWrites(t, anon, node)
	readsEvents(t, anon)

	reader := dial(t, srv.ClientURL(), nats.UserInfo(natsnode.ReaderUser, ""))
	refusedWrites(t, reader, node)

	_, err := nats.Connect(srv.ClientURL(), nats.UserInfo(natsnode.NodeUser, "guess"))
	require.Error(t, err, "the node's user needs its password")
	user, pw := srv.NodeCredentials()
	admin := dial(t, srv.ClientURL(), nats.UserInfo(user, pw))
	_, err = admin.Publish(t.Context(), eventlog.EventSubject("r", "peer_left"), []byte(`{"by":"cli"}`))
	require.NoError(t, err, "a tool with the node's credentials writes")
}

// TestReaderPassword: with a reader password, clients without credentials are refused and the
// reader is still read-only.
func TestReaderPassword(t *testing.T) {
	srv, node := startOpen(t, natsnode.AuthConfig{ReaderPassword: "s3cret"})
	_, err := nats.Connect(srv.ClientURL())
	require.Error(t, err, "no credentials, no connection")
	_, err = nats.Connect(srv.ClientURL(), nats.UserInfo(natsnode.ReaderUser, "wrong"))
	require.Error(t, err)
	reader := dial(t, srv.ClientURL(), nats.UserInfo(natsnode.ReaderUser, "s3cret"))
	refusedWrites(t, reader, node)
	readsEvents(t, reader)
}
