package tests

import (
	"fmt"
	"os"
	"testing"
)

// TestMain runs the package's tests, then checks that the signalling tests together sent every
// message type schemas/signal describes (each one validated as it was checked by its test).
// It checks only when every coverage test ran: with a -run filter it says so and skips.
func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		missing, ran, err := wire.missingTypes()
		switch {
		case err != nil:
			fmt.Fprintf(os.Stderr, "FAIL: signalling coverage: %v\n", err)
			code = 1
		case !ran:
			if testing.Verbose() {
				fmt.Fprintf(os.Stderr, "signalling coverage not checked: not every test of %v ran\n", coverageTests)
			}
		case len(missing) > 0:
			fmt.Fprintf(os.Stderr, "FAIL: no signalling test sent these message types (each needs one, validated against its schema): %v\n", missing)
			code = 1
		}
	}
	os.Exit(code)
}
