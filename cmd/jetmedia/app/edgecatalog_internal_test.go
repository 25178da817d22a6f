package app

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestRegionCatalogForgetsUnplayedTracks: an edge remembers the tracks it serves from the
// region while a viewer plays them, and forgets them forgetAfter after the last round of the
// recheck that saw one played (before, an entry stayed for good when every viewer left before
// the track ended).
func TestRegionCatalogForgetsUnplayedTracks(t *testing.T) {
	r := newRegionCatalog(nil, nil)
	t0 := time.Date(2026, 12, 7, 17, 0, 0, 0, time.UTC)
	r.remember("room", []string{"a", "v"}, t0)
	r.remember("other", []string{"x"}, t0)

	// Just chosen, not yet counted as played: kept within forgetAfter.
	r.playing(map[string][]string{}, t0.Add(forgetAfter/2))
	require.True(t, r.remembered("room", "a"))
	require.True(t, r.remembered("other", "x"))

	// "room"'s video is still played; its audio and "other" are not any more.
	r.playing(map[string][]string{"room": {"v"}}, t0.Add(forgetAfter))
	r.playing(map[string][]string{"room": {"v"}}, t0.Add(forgetAfter+time.Second))
	require.True(t, r.remembered("room", "v"))
	require.False(t, r.remembered("room", "a"))
	require.False(t, r.remembered("other", "x"))
	require.NotContains(t, r.played, "other", "an empty room goes too")

	// The last viewer leaves: forgotten forgetAfter later.
	r.playing(map[string][]string{}, t0.Add(2*forgetAfter))
	require.True(t, r.remembered("room", "v"))
	r.playing(map[string][]string{}, t0.Add(2*forgetAfter+2*time.Second))
	require.Empty(t, r.played)
}
