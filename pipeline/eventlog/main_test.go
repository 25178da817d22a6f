package eventlog_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package when a test leaves a goroutine behind (every server, connection,
// follower and router a test starts is closed by it).
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
