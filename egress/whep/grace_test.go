package whep

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestStartingUp(t *testing.T) {
	now := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	audio := TrackSpec{Track: "a", Kind: "audio", Since: now.Add(-100 * time.Millisecond)}
	oldAudio := TrackSpec{Track: "a", Kind: "audio", Since: now.Add(-10 * time.Second)}
	video := TrackSpec{Track: "v", Kind: "video", Since: now.Add(-50 * time.Millisecond)}
	cases := []struct {
		name   string
		wanted map[string]int
		specs  []TrackSpec
		want   bool
	}{
		{"video still missing just after audio", map[string]int{"video": 1}, []TrackSpec{audio}, true},
		{"audio-only publisher long established", map[string]int{"video": 1}, []TrackSpec{oldAudio}, false},
		{"everything wanted is there", map[string]int{"audio": 0, "video": 0}, []TrackSpec{audio, video}, false},
		{"viewer wants nothing more", map[string]int{}, []TrackSpec{audio}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			require.Equal(t, c.want, startingUp(c.wanted, c.specs, now))
		})
	}
}
