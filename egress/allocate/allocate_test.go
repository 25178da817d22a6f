package allocate

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

var (
	t0     = time.Unix(1000, 0)
	audio  = Track{ID: "a", Kind: Audio, Layers: []int{40_000}}
	camera = Track{ID: "cam", Kind: Video, Layers: []int{150_000, 500_000, 1_500_000}}
	screen = Track{ID: "screen", Kind: Video, Priority: 10, Layers: []int{200_000, 1_000_000}}
)

func layers(a Allocation) map[string]int {
	out := map[string]int{}
	for _, t := range a.Targets {
		out[t.ID] = t.Layer
	}
	return out
}

func TestFirstAllocation(t *testing.T) {
	for _, tc := range []struct {
		name     string
		estimate int
		tracks   []Track
		want     map[string]int
		used     int
	}{
		{"audio before any video", 100_000, []Track{camera, audio}, map[string]int{"cam": Paused, "a": 0}, 40_000},
		{"audio even beyond the estimate", 10_000, []Track{audio}, map[string]int{"a": 0}, 40_000},
		{"everything fits", 3_000_000, []Track{audio, camera}, map[string]int{"a": 0, "cam": 2}, 1_540_000},
		{"highest layer that fits", 800_000, []Track{audio, camera}, map[string]int{"a": 0, "cam": 1}, 540_000},
		{"priority first", 1_400_000, []Track{audio, camera, screen},
			map[string]int{"a": 0, "screen": 1, "cam": 0}, 1_190_000},
		{"priority first, little left", 1_300_000, []Track{audio, camera, screen},
			map[string]int{"a": 0, "screen": 1, "cam": Paused}, 1_040_000},
		{"rate unknown: top, free", 0, []Track{{ID: "x", Kind: Video}, {ID: "y", Kind: Audio}},
			map[string]int{"x": 0, "y": 0}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := New(Config{}).Allocate(t0, tc.estimate, tc.tracks)
			require.Equal(t, tc.want, layers(got))
			require.Equal(t, tc.used, got.Used)
			require.Equal(t, int(float64(tc.estimate)*0.9), got.Budget)
			for i, tr := range tc.tracks {
				require.Equal(t, tr.ID, got.Targets[i].ID, "targets keep the tracks' order")
			}
		})
	}
}

// step runs the allocator over a timeline of estimates for audio and camera and returns
// the camera's layers.
type step struct {
	at       time.Duration
	estimate int
	layer    int
	probing  bool
}

func run(t *testing.T, a *Allocator, steps []step) {
	t.Helper()
	for _, s := range steps {
		got := a.Allocate(t0.Add(s.at), s.estimate, []Track{audio, camera})
		require.Equal(t, s.layer, got.Targets[1].Layer, "at %v estimate %d", s.at, s.estimate)
		require.Equal(t, s.probing, got.Targets[1].Probing, "probing at %v", s.at)
	}
}

func TestDownAtOnceUpWithMargin(t *testing.T) {
	run(t, New(Config{ProbeAfter: time.Hour}), []step{
		{0, 2_000_000, 2, false},
		{time.Second, 1_000_000, 1, false},   // budget 900k - 40k audio: layer 1 (500k)
		{2 * time.Second, 300_000, 0, false}, // 230k left: layer 0
		// 599k - 40k = 559k left: layer 1 fits but not with 15 % margin (575k).
		{3 * time.Second, 666_000, 0, false},
		{4 * time.Second, 750_000, 1, false}, // 635k left: up one layer
		{5 * time.Second, 5_000_000, 2, false},
		{6 * time.Second, 300_000, 0, false},
		// An estimate that carries the top layer with margin moves there at once, past
		// layer 1.
		{7 * time.Second, 3_000_000, 2, false},
	})
}

func TestProbeBackoff(t *testing.T) {
	a := New(Config{})
	s := time.Second
	run(t, a, []step{
		{0, 100_000, Paused, false},
		{2 * s, 100_000, Paused, false},
		{3 * s, 100_000, 0, true},       // paused for ProbeAfter: try layer 0
		{5 * s, 120_000, 0, true},       // holding: the estimate grows
		{6 * s, 110_000, 0, true},       // still not below where it began
		{7 * s, 110_000, Paused, false}, // after ProbeHold it does not fit: back down, wait 6 s
		{12 * s, 110_000, Paused, false},
		{13 * s, 110_000, 0, true},      // the next probe
		{14 * s, 90_000, Paused, false}, // the estimate fell under it: down early, wait 6 s (ProbeMax)
		{19 * s, 90_000, Paused, false},
		{20 * s, 90_000, 0, true},
		{21 * s, 80_000, Paused, false}, // failed again: the wait stays at ProbeMax
		{26 * s, 80_000, Paused, false},
		{27 * s, 400_000, 0, false}, // the estimate alone covers layer 0 with margin
	})
}

func TestProbeConfirmedEarlyChainsTheNext(t *testing.T) {
	a := New(Config{})
	s := time.Second
	ms := time.Millisecond
	run(t, a, []step{
		{0, 300_000, 0, false},
		{3 * s, 300_000, 1, true}, // below the top for ProbeAfter: try layer 1
		// The layer is sent: the (uncongested) estimate follows what is sent and covers it.
		{3500 * ms, 700_000, 1, true},
		{4 * s, 700_000, 1, true},
		// Covered for ProbeConfirm: confirmed, and the top layer is tried at once.
		{4500 * ms, 700_000, 2, true},
		{5 * s, 1_000_000, 2, true},
		{6 * s, 1_900_000, 2, true},
		{6500 * ms, 1_900_000, 2, true},
		{7 * s, 1_900_000, 2, false}, // 1.5 M covered for a second: confirmed, at the top
		{30 * s, 1_900_000, 2, false},
	})
}

func TestProbeThatFailsAfterAnEarlyConfirmationBacksOff(t *testing.T) {
	a := New(Config{})
	s := time.Second
	ms := time.Millisecond
	run(t, a, []step{
		{0, 300_000, 0, false},
		{3 * s, 300_000, 1, true},
		{3500 * ms, 700_000, 1, true},
		{4500 * ms, 700_000, 2, true},   // confirmed early; the top is tried
		{5 * s, 500_000, 0, false},      // below where the probe began: down to what fits, wait 6 s
		{10500 * ms, 500_000, 0, false}, // still waiting
		{11 * s, 500_000, 1, true},
		{11500 * ms, 300_000, 0, false}, // failed again: 6 s (ProbeMax)
		{17 * s, 300_000, 0, false},
		{17500 * ms, 300_000, 1, true},
	})
}

func TestHeadroomHalvesTheWait(t *testing.T) {
	a := New(Config{})
	s := time.Second
	ms := time.Millisecond
	run(t, a, []step{
		{0, 300_000, 0, false},
		// 599k - 40k = 559k left: layer 1 (500k) fits but not with the margin: probed after
		// half of ProbeAfter.
		{1 * s, 666_000, 0, false},
		{1500 * ms, 666_000, 1, true},
	})
}

func TestProbeThatHoldsResetsBackoff(t *testing.T) {
	a := New(Config{ProbeConfirm: 4 * time.Second})
	s := time.Second
	run(t, a, []step{
		{0, 300_000, 0, false},
		{3 * s, 300_000, 1, true},     // below the top for ProbeAfter: try layer 1
		{7 * s, 1_000_000, 2, true},   // the path carried it for ProbeHold: confirmed, next tried
		{9 * s, 1_000_000, 2, true},   // 1.5 M does not fit 860k, but the probe holds ProbeHold
		{11 * s, 1_000_000, 1, false}, // ... and then goes: down, wait doubles from the base
		{16 * s, 1_000_000, 1, false},
		{17 * s, 1_000_000, 2, true},
	})
}

func TestForgetsTracksGone(t *testing.T) {
	a := New(Config{})
	a.Allocate(t0, 100_000, []Track{audio, camera})
	require.Len(t, a.tracks, 1)
	a.Allocate(t0, 100_000, []Track{audio})
	require.Empty(t, a.tracks)
}

// BenchmarkAllocate is one viewer's allocation (audio, a camera and a screen share), run by
// the node every 500 ms per viewer.
func BenchmarkAllocate(b *testing.B) {
	a := New(Config{})
	tracks := []Track{audio, camera, screen}
	now := t0
	b.ReportAllocs()
	for b.Loop() {
		now = now.Add(500 * time.Millisecond)
		a.Allocate(now, 1_300_000, tracks)
	}
}
