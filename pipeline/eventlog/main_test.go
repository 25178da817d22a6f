package eventlog_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package when a test leaves a goroutine behind (every server, connection,
// follower and router a test starts is closed by it). Two of nats-server's are let go, both
// waiting on an edge that is gone or unreachable, each on a goroutine of its own that survives
// the server's shutdown for up to its timeout (stream.go): a stream that stops sourcing an
// edge asks the edge to delete its sourcing consumer (tryDeleteSourcingConsumer), and one that
// sources it waits for the edge to create it (trySetupSourceConsumer). The edge source tests
// (edgesource_test.go) add, restart and remove such sources; projections/presence lets the
// same two go.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreTopFunction("github.com/nats-io/nats-server/v2/server.(*stream).tryDeleteSourcingConsumer.func1"),
		goleak.IgnoreTopFunction("github.com/nats-io/nats-server/v2/server.(*stream).trySetupSourceConsumer.func3"))
}
