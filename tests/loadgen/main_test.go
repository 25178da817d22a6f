package loadgen

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests if any goroutine they started is still running at the
// end: every client closes what it started.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
