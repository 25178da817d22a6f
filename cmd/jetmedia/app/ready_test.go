package app

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/pipeline/metrics"
	"github.com/jetmedia/jetmedia/projections"
)

// A projection a few batches behind (as one keeping pace with a sustained rate is) leaves the
// node ready; one further behind (catching up after a restart) does not, and says how far.
func TestProjectionReady(t *testing.T) {
	require.NoError(t, projectionReady(0))
	require.NoError(t, projectionReady(projections.ReadyLag))
	err := projectionReady(projections.ReadyLag + 1)
	require.ErrorIs(t, err, metrics.ErrNotReady)
	require.ErrorContains(t, err, "8193 events behind the log")
}
