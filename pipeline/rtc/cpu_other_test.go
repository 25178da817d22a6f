//go:build !unix

package rtc

import (
	"testing"
	"time"
)

// processCPU is not measured here: EdgeWrite reports no CPU per packet.
func processCPU(testing.TB) time.Duration { return 0 }
