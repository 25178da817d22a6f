package sipcall

import (
	"testing"

	"go.uber.org/goleak"
)

// Every goroutine a node, its SIP gateway (sipgo's transports and transactions included) and
// the test clients started must be gone when the tests end.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
