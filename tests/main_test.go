package tests

import (
	"fmt"
	"os"
	"testing"
)

// TestMain runs the package's tests, then checks that the signalling tests together sent every
// message type schemas/signal describes (each one validated as it was checked by its test).
// It checks only when every coverage test ran: with a -run filter it says so on stderr (even
// without -v) and skips the check.
func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		missing, ran, err := wire.missingTypes()
		switch {
		case err != nil:
			fmt.Fprintf(os.Stderr, "FAIL: signalling coverage: %v\n", err)
			code = 1
		case !ran:
			// Always printed: a filtered run must not pass as one that checked the coverage.
			fmt.Fprintf(os.Stderr, "signalling coverage NOT checked: %v of the tests that together send every message type did not run (a -run or -skip filter left them out)\n",
				wire.notRan())
		case len(missing) > 0:
			fmt.Fprintf(os.Stderr, "FAIL: no signalling test sent these message types (each needs one, validated against its schema): %v\n", missing)
			code = 1
		}
	}
	os.Exit(code)
}

// notRan lists the coverage tests that recorded no signalling in this run.
func (w *wireLog) notRan() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []string
	for _, name := range coverageTests {
		if !w.tests[name] {
			out = append(out, name)
		}
	}
	return out
}
