package forward

import (
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// estimates is a table of connections' estimates by sender: the seam rtc.Estimates fills.
type estimates struct {
	mu        sync.Mutex
	rate      map[string]int
	congested bool
}

func (e *estimates) Estimate(sender string) (string, int, bool, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	r, ok := e.rate[sender]
	return "viewer", r, e.congested, ok
}

func (e *estimates) set(r int, congested bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.congested = congested
	for k := range e.rate {
		e.rate[k] = r
	}
}

// TestCongestionPausesVideoAndResumesWithoutGap: a viewer whose estimate cannot carry its
// video keeps its audio; when the video comes back its sequence numbers have no gap and a
// key frame is asked for.
func TestCongestionPausesVideoAndResumesWithoutGap(t *testing.T) {
	est := &estimates{rate: map[string]int{"v": 5_000_000, "a": 5_000_000}}
	c := &Congestion{Estimates: est}
	var video, audio Fanout
	vcol, acol := &collector{}, &collector{}
	vout, aout := NewOutput(1, 96, vcol), NewOutput(2, 111, acol)
	video.add(vout)
	audio.add(aout)
	keyframes := 0
	c.add("v", &Track{MediaKind: "video", OnKeyframeRequest: func(string) { keyframes++ }}, vout, &video)
	c.add("a", &Track{MediaKind: "audio"}, aout, &audio)

	now := time.Unix(0, 0)
	seq := uint16(100)
	// 1 s of 1.2 Mbit/s video (100 packets of 1500 bytes) and audio, allocating each 250 ms.
	send := func(d time.Duration) {
		for end := now.Add(d); now.Before(end); now = now.Add(10 * time.Millisecond) {
			video.Forward(rtpPacket(t, 7, seq, string(make([]byte, 1488))))
			audio.Forward(rtpPacket(t, 8, seq, "opus"))
			seq++
			if now.UnixMilli()%250 == 0 {
				c.Step(now)
			}
		}
	}
	send(time.Second)
	require.Len(t, vcol.got(), 100)
	require.Zero(t, c.Pauses.Load())

	est.set(300_000, false) // below the video's rate, but no sign of congestion: not grown yet
	send(time.Second)
	require.Zero(t, c.Pauses.Load())
	est.set(300_000, true) // loss or growing delay: the estimate is the path's
	send(time.Second)
	require.EqualValues(t, 1, c.Pauses.Load())
	require.Len(t, acol.got(), 300, "audio is never paused")
	paused := len(vcol.got())
	require.Less(t, paused, 300)

	est.set(5_000_000, false)
	send(time.Second)
	require.EqualValues(t, 1, c.Resumes.Load())
	require.Equal(t, 1, keyframes)
	got := vcol.got()
	require.Greater(t, len(got), paused)
	for i := 1; i < len(got); i++ {
		require.Equal(t, got[i-1].SequenceNumber+1, got[i].SequenceNumber, "no gap for the viewer to NACK at %d", i)
		require.Greater(t, got[i].Timestamp, got[i-1].Timestamp)
	}

	c.remove(vout)
	c.remove(aout)
	c.Step(now)
	require.Empty(t, c.viewers)
	require.Empty(t, c.rates)
}

// TestCongestionOffIsFree: a hub without congestion control registers nothing.
func TestCongestionOffIsFree(t *testing.T) {
	var c *Congestion
	c.add("v", &Track{MediaKind: "video"}, &Output{}, &Fanout{})
	c.remove(&Output{})
}

// TestStarvedNeedsUnbrokenUnfitTime: a simulcast track on its lowest layer is paused only
// after lowestGrace of steps that allot it nothing without a break; one step that fits
// (the estimate recovering after a failed probe) starts the count again.
func TestStarvedNeedsUnbrokenUnfitTime(t *testing.T) {
	b := &bweOutput{}
	now := time.Unix(0, 0)
	step := 500 * time.Millisecond
	for _, s := range []struct {
		unfit, starved bool
	}{
		{true, false}, {true, false}, {true, false}, // 0, 0.5, 1 s
		{false, false},                                             // fits again: the count restarts
		{true, false}, {true, false}, {true, false}, {true, false}, // 0 .. 1.5 s
		{true, true}, // 2 s unfit without a break
		{true, true},
		{false, false},
	} {
		require.Equal(t, s.starved, b.starved(now, s.unfit), "at %v", now.Sub(time.Unix(0, 0)))
		now = now.Add(step)
	}
}

// TestKeepOpenCountsOnlyUnbrokenStarvation: steps that allot the track a layer end the count
// (a first version skipped the count on them, so one unfit step long after an earlier one
// paused the track at once: Chromium froze right after a failed probe).
func TestKeepOpenCountsOnlyUnbrokenStarvation(t *testing.T) {
	b := &bweOutput{}
	t0 := time.Unix(0, 0)
	ms := time.Millisecond
	require.True(t, b.keepOpen(t0, true, false), "unfit once: kept open")
	for at := 500 * ms; at <= 3000*ms; at += 500 * ms {
		require.True(t, b.keepOpen(t0.Add(at), true, true))
	}
	require.True(t, b.keepOpen(t0.Add(3500*ms), true, false), "one unfit step after steps that fit: kept open")
	require.True(t, b.keepOpen(t0.Add(5000*ms), true, false))
	require.False(t, b.keepOpen(t0.Add(5500*ms), true, false), "unfit for 2 s without a break: paused")
	require.True(t, b.keepOpen(t0.Add(6000*ms), true, true), "allotted again: open")
	require.True(t, b.keepOpen(t0.Add(6500*ms), false, false), "not on its lowest layer: never paused here")
}

// TestRatesBelowChooseTheLayerAllotted: whatever the measured and nominal rates, the
// chooser given layer k's rate (and the rates) picks layer k, the one the allocator counted.
func TestRatesBelowChooseTheLayerAllotted(t *testing.T) {
	layers := []string{"q", "h", "f"}
	for _, rates := range [][]uint64{
		{150_000, 500_000, 1_700_000}, // nominal
		{150_000, 500_000, 417_000},   // f measured below h's nominal (a loaded publisher)
		{200_000, 200_000, 200_000},   // all alike
		{0, 0, 1},
	} {
		r := slices.Clone(rates)
		below(r)
		for k := range layers {
			got := ChooseLayer(layers, LayerTarget{Bitrate: r[k], LayerRates: r})
			if r[k] == 0 {
				continue // a zero bit rate means "unknown" to the chooser
			}
			require.Equal(t, layers[k], got, "rates %v (made %v), layer %d", rates, r, k)
		}
	}
}
