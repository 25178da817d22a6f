package eventlog_test

import (
	"testing"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/pipeline/eventlog"
)

// TestSourceHeaderIsTheServers: the header ReadStored reads a copied event's source from is the
// one nats-server sets on sourced messages.
func TestSourceHeaderIsTheServers(t *testing.T) {
	require.Equal(t, server.JSStreamSource, eventlog.SourceHeader)
}
