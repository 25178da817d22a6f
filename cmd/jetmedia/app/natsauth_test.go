package app_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/cmd/jetmedia/app"
	"github.com/jetmedia/jetmedia/pipeline/eventlog"
)

// TestNATSPortIsReadOnly: a node that opens its NATS port records its URL and credentials in
// the data directory (0600) for the CLI; a client without them may read the log, not append.
func TestNATSPortIsReadOnly(t *testing.T) {
	cfg := app.Defaults()
	cfg.Name = "natsauth"
	cfg.DataDir = t.TempDir()
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.UDPPort = 0
	cfg.NATSListen = "127.0.0.1:0"
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	n, err := app.Start(ctx, cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = n.Close() })

	fi, err := os.Stat(filepath.Join(cfg.DataDir, "nats.auth"))
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	url := app.RunningNATSURL(cfg.DataDir)
	require.NotEmpty(t, url)

	anon, err := nats.Connect(url)
	require.NoError(t, err)
	defer anon.Close()
	ajs, err := jetstream.New(anon)
	require.NoError(t, err)
	pctx, pcancel := context.WithTimeout(ctx, 2*time.Second)
	defer pcancel()
	_, err = ajs.Publish(pctx, eventlog.EventSubject("forged", "peer_joined"), []byte(`{}`))
	require.Error(t, err, "an outside client appended to the log")

	cli, err := nats.Connect(url, nats.UserInfo(app.RunningNATSCredentials(cfg.DataDir)))
	require.NoError(t, err)
	defer cli.Close()
	cjs, err := jetstream.New(cli)
	require.NoError(t, err)
	_, err = cjs.CreateOrUpdateKeyValue(ctx, eventlog.RoomsBucketConfig("rooms_rebuild", eventlog.StorageConfig{}))
	require.NoError(t, err, "the CLI acts for the node with the recorded credentials")

	st, err := n.JetStream().Stream(ctx, eventlog.StreamEvents)
	require.NoError(t, err)
	_, err = st.GetLastMsgForSubject(ctx, eventlog.RoomEventsFilter("forged"))
	require.ErrorIs(t, err, jetstream.ErrMsgNotFound, "nothing of the forged room stored")
	require.NoError(t, n.Close())
	_, err = os.Stat(filepath.Join(cfg.DataDir, "nats.auth"))
	require.ErrorIs(t, err, os.ErrNotExist, "the credentials go with the node")
}
