package logtools

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestProgressOnlyOnTerminals(t *testing.T) {
	var buf strings.Builder
	require.Nil(t, NewProgress(&buf, "x", 10), "not a file")
	f, err := os.Create(t.TempDir() + "/out")
	require.NoError(t, err)
	defer f.Close()
	require.Nil(t, NewProgress(f, "x", 10), "a regular file (redirected stderr)")
	r, w, err := os.Pipe()
	require.NoError(t, err)
	defer r.Close()
	defer w.Close()
	require.Nil(t, NewProgress(w, "x", 10), "a pipe")
	var p *Progress // what the commands hold when stderr is not a terminal
	p.Tick(1)
	p.Done()

	// /dev/null is a character device, like a terminal: the reporter runs (into nothing).
	null, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	require.NoError(t, err)
	defer null.Close()
	p = NewProgress(null, "x", 100_000)
	require.NotNil(t, p)
	p.lastPrint = p.lastPrint.Add(-time.Second)
	for seq := range uint64(100_000) {
		p.Tick(seq + 1)
	}
	require.True(t, p.printed)
	p.Done()
}
