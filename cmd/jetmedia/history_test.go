package main

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/events"
	"github.com/jetmedia/jetmedia/pipeline"
	"github.com/jetmedia/jetmedia/tests/loggen"
)

var genStart = time.Date(2026, 11, 3, 10, 0, 0, 0, time.UTC)

// withStore runs fn on a JetStream store in a fresh data directory, then shuts the server down
// so that the CLI can open the directory itself.
func withStore(t *testing.T, fn func(js jetstream.JetStream)) string {
	t.Helper()
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	srv, err := pipeline.StartServer(ctx, pipeline.ServerConfig{Name: "history-test", JetStream: true, StoreDir: dir})
	require.NoError(t, err)
	defer srv.Shutdown()
	nc, err := srv.Connect("history-test")
	require.NoError(t, err)
	defer nc.Close()
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	require.NoError(t, pipeline.Declare(ctx, js, pipeline.StorageConfig{}))
	fn(js)
	return dir
}

func TestAuditVerify(t *testing.T) {
	var forgedSeq uint64
	dir := withStore(t, func(js jetstream.JetStream) {
		ctx := t.Context()
		require.NoError(t, loggen.Write(ctx, js, 300, loggen.New("good", 1, genStart, time.Second).Next))
		require.NoError(t, loggen.Write(ctx, js, 50, loggen.New("bad", 2, genStart, time.Second).Next))
		// A forged event written straight onto the room's subject, bypassing the appender.
		e, err := events.New(events.Meta{Room: "bad", Actor: "mallory", Node: "n1", Time: genStart},
			events.PeerJoined{Peer: "mallory", Transport: events.TransportWHIP, Role: "publisher", Node: "n1"})
		require.NoError(t, err)
		raw, err := events.Encode(e)
		require.NoError(t, err)
		ack, err := js.Publish(ctx, pipeline.EventSubject("bad", "peer_joined"), raw)
		require.NoError(t, err)
		forgedSeq = ack.Sequence
		// The appender chains later events after it, so only the forged one breaks.
		_, err = pipeline.NewAppender(js, "n1").Append(ctx, e)
		require.NoError(t, err)
		_, err = pipeline.NewAppender(js, "n1").Append(ctx, loggen.Events("bad", 2, 3, genStart, 0)[1])
		require.NoError(t, err)
	})
	data := "--data=" + dir

	out, err := runCLI(t, "audit", "verify", data, "--room", "good")
	require.NoError(t, err)
	require.Contains(t, out, "room good: intact: 300 events (seq 1..300), head ")

	out, err = runCLI(t, "audit", "verify", data, "--room", "bad")
	require.ErrorIs(t, err, errBroken)
	require.Contains(t, out, "room bad: BROKEN at seq 351 ")
	require.Contains(t, out, "found none")

	out, err = runCLI(t, "audit", "verify", data)
	require.ErrorIs(t, err, errBroken)
	require.Contains(t, out, "room good: intact: 300 events")
	require.Contains(t, out, "1 of 2 rooms BROKEN")

	out, err = runCLI(t, "audit", "verify", data, "--json")
	require.True(t, errors.Is(err, errBroken))
	var reports []chainReport
	require.NoError(t, json.Unmarshal([]byte(out), &reports))
	require.Len(t, reports, 2)
	require.Equal(t, "bad", reports[0].Room)
	require.False(t, reports[0].Intact)
	require.Equal(t, forgedSeq, reports[0].Break.Seq)
	require.Equal(t, uint64(350), reports[0].Break.PrevSeq)
	require.True(t, reports[1].Intact)

	_, err = runCLI(t, "audit", "verify", data, "--room", "nobody")
	require.ErrorContains(t, err, "has no events")
	_, err = runCLI(t, "audit", "verify", data, "--room", "a.b")
	require.ErrorContains(t, err, "valid room id")
	_, err = runCLI(t, "audit")
	require.ErrorIs(t, err, errUsage)
}
