package main

import (
	"log/slog"
	"runtime"
	"testing"

	"github.com/stretchr/testify/require"
)

// raiseProcs adds one Go processor per edge sender to the runtime's default, once however
// often serve runs in a process, and not at all when GOMAXPROCS is set.
func TestRaiseProcs(t *testing.T) {
	before := runtime.GOMAXPROCS(0)
	t.Cleanup(func() { runtime.GOMAXPROCS(before) })
	log := slog.New(slog.DiscardHandler)

	t.Setenv("GOMAXPROCS", "3")
	runtime.GOMAXPROCS(defaultProcs)
	raiseProcs(2, log)
	require.Equal(t, defaultProcs, runtime.GOMAXPROCS(0), "GOMAXPROCS set: left alone")

	t.Setenv("GOMAXPROCS", "")
	raiseProcs(2, log)
	require.Equal(t, defaultProcs+2, runtime.GOMAXPROCS(0))
	raiseProcs(2, log)
	require.Equal(t, defaultProcs+2, runtime.GOMAXPROCS(0), "a second serve adds nothing")
	raiseProcs(0, log)
	require.Equal(t, defaultProcs+2, runtime.GOMAXPROCS(0))
}
