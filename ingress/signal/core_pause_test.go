package signal

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/pipeline/auth"
	"github.com/jetmedia/jetmedia/pipeline/rtc"
)

// A publisher sends every layer at first; a layer nobody watches for PauseAfter is paused, the
// lowest never; a watched layer comes back at once; nothing is sent while the set holds.
func TestCoreLayersWatched(t *testing.T) {
	c := NewCore(rtc.Timeouts{}, "r1", "me", "n1", claims(auth.Publish), true)
	c.Joined(t0, "", "")
	layers := []string{"q", "h", "f"}
	active := func(out Output) []string {
		t.Helper()
		require.Len(t, out.Send, 1)
		require.Equal(t, TypeLayersActive, out.Send[0].Type)
		require.Equal(t, "t1", out.Send[0].LayersActive.Track)
		return out.Send[0].LayersActive.Layers
	}
	at := func(d time.Duration) time.Time { return t0.Add(d) }

	require.Empty(t, c.LayersWatched(at(0), "t1", layers, nil).Send, "every layer on at first")
	require.Empty(t, c.LayersWatched(at(4*time.Second), "t1", layers, nil).Send, "within PauseAfter")
	require.Equal(t, []string{"q"}, active(c.LayersWatched(at(PauseAfter), "t1", layers, nil)))
	require.Empty(t, c.LayersWatched(at(6*time.Second), "t1", layers, nil).Send)

	require.Equal(t, []string{"q", "f"}, active(c.LayersWatched(at(7*time.Second), "t1", layers, []string{"f"})), "a viewer of f")
	require.Empty(t, c.LayersWatched(at(8*time.Second), "t1", layers, []string{"f", "q"}).Send)
	// f's viewer moves to h: f stays on for PauseAfter after it was last watched.
	require.Equal(t, []string{"q", "h", "f"}, active(c.LayersWatched(at(9*time.Second), "t1", layers, []string{"h"})))
	require.Empty(t, c.LayersWatched(at(12*time.Second), "t1", layers, []string{"h"}).Send)
	require.Equal(t, []string{"q", "h"}, active(c.LayersWatched(at(13*time.Second), "t1", layers, []string{"h"})))

	require.Empty(t, c.LayersWatched(at(0), "t2", []string{"0"}, nil).Send, "a single layer is never paused")
	c.ForgetLayers("t1")
	require.Empty(t, c.LayersWatched(at(20*time.Second), "t1", layers, nil).Send, "forgotten: on again from the start")
}
