package main

import (
	"bytes"
	"context"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestLoadFlags(t *testing.T) {
	var out, errOut bytes.Buffer
	err := run(context.Background(), []string{"load", "--url", "ftp://example", "--publishers", "0"}, &out, &errOut)
	require.ErrorContains(t, err, `url "ftp://example"`)
	require.ErrorContains(t, err, "publishers 0")
	require.ErrorContains(t, run(context.Background(), []string{"load", "--viewer", "quic"}, &out, &errOut), `viewer "quic": want lite or pion`)
	require.ErrorIs(t, run(context.Background(), []string{"load", "--no-such-flag"}, &out, &errOut), errUsage)
	require.Error(t, run(context.Background(), []string{"load", "extra"}, &out, &errOut))
}
