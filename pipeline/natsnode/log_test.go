package natsnode

import (
	"log/slog"
	"testing"

	"github.com/stretchr/testify/require"
)

// The lines nats-server logged at WARN or ERROR while two-node clusters and leaf nodes of
// the end-to-end tests formed, snapshotted and shut down.
func TestNATSLevels(t *testing.T) {
	for _, tc := range []struct {
		level slog.Level
		msg   string
		want  slog.Level
	}{
		{slog.LevelWarn, "Waiting for routing to be established...", slog.LevelInfo},
		{slog.LevelWarn, "JetStream has not established contact with a meta leader", slog.LevelInfo},
		{slog.LevelWarn, "Metalayer blocking snapshot starting", slog.LevelDebug},
		{slog.LevelWarn, "Metalayer blocking snapshot took 0.005s (streams: 3, consumers: 5, compacted: 75.33 KB)", slog.LevelDebug},
		{slog.LevelWarn, "The option `default_js_domain` is a temporary backwards compatibility measure and will be removed", slog.LevelDebug},
		{slog.LevelError, "Error trying to connect to route (attempt 1): dial tcp 127.0.0.1:36087: connect: connection refused", slog.LevelWarn},
		{slog.LevelError, `Error trying to connect as leafnode to remote server "127.0.0.1:7422" (attempt 1): dial tcp 127.0.0.1:7422: connect: connection refused`, slog.LevelWarn},
		{slog.LevelError, `Error connecting to explicit gateway "west" (127.0.0.1:7222) at 127.0.0.1:7222 (attempt 1): dial tcp 127.0.0.1:7222: connect: connection refused`, slog.LevelWarn},
		{slog.LevelError, "JetStream out of resources, will be DISABLED", slog.LevelError},
		{slog.LevelWarn, "Filestore [EVENTS] writeMsgRecord: disk full", slog.LevelWarn},
	} {
		require.Equal(t, tc.want, natsLevel(tc.level, tc.msg), "%s %q", tc.level, tc.msg)
	}
}
