package mediabus

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/pipeline/natsnode"
)

// StartTestServer starts an embedded NATS server (no JetStream) for a test, stopped when it
// ends, and returns it with a function that opens a named connection to it (closed at the
// end too). Exported for the package's external tests.
func StartTestServer(t *testing.T, name string) (*natsnode.Server, func(name string, opts ...nats.Option) *nats.Conn) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv, err := natsnode.StartServer(ctx, natsnode.ServerConfig{Name: name})
	require.NoError(t, err)
	t.Cleanup(srv.Shutdown)
	return srv, func(name string, opts ...nats.Option) *nats.Conn {
		nc, err := srv.Connect(name, opts...)
		require.NoError(t, err)
		t.Cleanup(nc.Close)
		return nc
	}
}
