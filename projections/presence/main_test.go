package presence_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests when any of them leaves a goroutine running. Two of
// nats-server's are let go, both waiting on an edge that is gone, each on a goroutine of its
// own that survives the server's shutdown for up to its timeout: a stream that stops
// sourcing an edge asks the edge to delete its sourcing consumer (tryDeleteSourcingConsumer),
// and one that sources it waits for the edge to create it (trySetupSourceConsumer; stream.go;
// TestForgetEdge adds and removes such a source; seen leaking in 2 of 3 runs on a loaded
// machine).
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreTopFunction("github.com/nats-io/nats-server/v2/server.(*stream).tryDeleteSourcingConsumer.func1"),
		goleak.IgnoreTopFunction("github.com/nats-io/nats-server/v2/server.(*stream).trySetupSourceConsumer.func3"))
}
