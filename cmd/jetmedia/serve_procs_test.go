package main

import (
	"log/slog"
	"runtime"
	"testing"

	"github.com/stretchr/testify/require"
)

// raiseProcs adds one Go processor per edge sender to the runtime's default, once however
// often serve runs in a process, and not at all when GOMAXPROCS is set or the default is
// below the CPUs (a CPU quota).
func TestRaiseProcs(t *testing.T) {
	before := runtime.GOMAXPROCS(0)
	t.Cleanup(func() { runtime.GOMAXPROCS(before) })
	log := slog.New(slog.DiscardHandler)

	t.Setenv("GOMAXPROCS", "3")
	runtime.GOMAXPROCS(defaultProcs)
	raiseProcs(2, defaultProcs, log)
	require.Equal(t, defaultProcs, runtime.GOMAXPROCS(0), "GOMAXPROCS set: left alone")

	t.Setenv("GOMAXPROCS", "")
	raiseProcs(2, defaultProcs+1, log)
	require.Equal(t, defaultProcs, runtime.GOMAXPROCS(0), "a quota below the CPUs: left alone")
	raiseProcs(2, defaultProcs, log)
	require.Equal(t, defaultProcs+2, runtime.GOMAXPROCS(0))
	raiseProcs(2, defaultProcs, log)
	require.Equal(t, defaultProcs+2, runtime.GOMAXPROCS(0), "a second serve adds nothing")
	raiseProcs(0, defaultProcs, log)
	require.Equal(t, defaultProcs+2, runtime.GOMAXPROCS(0))
}
