package forward

import (
	"strconv"
	"testing"
	"time"
)

// manyEstimates gives every sender its own connection at one rate.
type manyEstimates struct{ rate int }

func (e manyEstimates) Estimate(sender string) (string, int, bool, bool) {
	return sender, e.rate, true, true
}

// BenchmarkCongestionStep: one allocation round for 1000 viewers, each with a video track
// (three simulcast layers, or one) and an audio track, under an estimate that fits the
// middle layer.
func BenchmarkCongestionStep(b *testing.B) {
	b.Run("simulcast", func(b *testing.B) { benchCongestionStep(b, []string{"q", "h", "f"}) })
	b.Run("single", func(b *testing.B) { benchCongestionStep(b, nil) })
}

func benchCongestionStep(b *testing.B, layers []string) {
	hub := NewHub(nil)
	c := &Congestion{Estimates: manyEstimates{rate: 900_000}}
	var video, audio Fanout
	for i := range 1000 {
		id := strconv.Itoa(i)
		vt := &Track{Hub: hub, Room: "r", TrackID: "cam", MediaKind: "video", Layers: layers}
		vo, ao := &Output{}, &Output{}
		vt.fan, vt.layer = &video, "f"
		c.add("v"+id, vt, vo, &video)
		c.add("a"+id, &Track{MediaKind: "audio"}, ao, &audio)
	}
	now := time.Unix(0, 0)
	b.ReportAllocs()
	for b.Loop() {
		now = now.Add(500 * time.Millisecond)
		c.Step(now)
	}
}
