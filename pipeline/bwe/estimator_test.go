package bwe_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/pipeline/bwe"
)

func TestCleanPathRisesToCap(t *testing.T) {
	p := newPath(bwe.Config{Initial: 300_000, Max: 2_500_000})
	p.rate = 2_000_000
	p.run(20 * time.Second)
	est := p.estimate()
	require.Zero(t, p.fbErrors)
	require.Equal(t, 2_500_000, est.Bitrate, "%+v", est)
	require.False(t, est.Congested, "%+v", est)
	require.InDelta(t, 2_000_000, est.Acked, 300_000, "%+v", est)
	require.Less(t, est.Loss, 0.01)
}

func TestCleanPathRisesAboveWhatIsSent(t *testing.T) {
	p := newPath(bwe.Config{Initial: 300_000})
	p.rate = 1_000_000
	p.run(3 * time.Second)
	est := p.estimate()
	// At once to what was acknowledged, then up to 1.5 times it.
	require.Greater(t, est.Bitrate, 1_000_000, "%+v", est)
	require.LessOrEqual(t, est.Bitrate, 1_600_000, "%+v", est)
	require.False(t, est.Congested)
}

func TestLossLowersEstimate(t *testing.T) {
	p := newPath(bwe.Config{Initial: 2_000_000})
	p.run(2 * time.Second)
	before := p.estimate()
	require.False(t, before.Congested, "%+v", before)
	p.loss = 0.2
	p.run(3 * time.Second)
	est := p.estimate()
	require.True(t, est.Congested, "%+v", est)
	require.InDelta(t, 0.2, est.Loss, 0.08, "%+v", est)
	// A cut of loss/2 every 300 ms or more (each needs 20 packets reported).
	require.Less(t, est.Bitrate, before.Bitrate*7/10, "before %+v after %+v", before, est)
	require.Equal(t, est.LossBitrate, est.Bitrate)
	// Loss gone: it grows again.
	p.loss = 0
	p.run(5 * time.Second)
	after := p.estimate()
	require.False(t, after.Congested, "%+v", after)
	require.Greater(t, after.Bitrate, est.Bitrate*3/2, "%+v", after)
}

func TestGrowingDelayLowersEstimate(t *testing.T) {
	// 2 Mbit/s into a 1 Mbit/s link with a deep queue: nothing is lost, the delay grows.
	p := newPath(bwe.Config{Initial: 2_000_000})
	p.run(time.Second)
	p.capacity, p.maxQueue = 1_000_000, time.Hour
	p.run(3 * time.Second)
	est := p.estimate()
	require.Zero(t, est.Loss, "%+v", est)
	require.Equal(t, bwe.Overuse, est.Usage, "%+v", est)
	require.Less(t, est.DelayBitrate, 1_000_000, "%+v", est)
	require.Greater(t, est.DelayBitrate, 500_000, "%+v", est)
	require.Equal(t, est.DelayBitrate, est.Bitrate)
	require.False(t, est.Congested, "delay alone is not congestion: %+v", est)
}

func TestCapWithTailDrop(t *testing.T) {
	// The browser tests' relay: 300 kbit/s with a 200 ms queue under a 2 Mbit/s track.
	p := newPath(bwe.Config{})
	p.run(2 * time.Second)
	p.capacity, p.maxQueue = 300_000, 200*time.Millisecond
	p.run(2 * time.Second)
	est := p.estimate()
	require.True(t, est.Congested, "%+v", est)
	require.Less(t, est.Bitrate, 400_000, "%+v", est)
	// The sender goes down to what fits: the estimate settles near the cap.
	p.rate = 200_000
	p.run(10 * time.Second)
	est = p.estimate()
	require.False(t, est.Congested, "%+v", est)
	require.Greater(t, est.Bitrate, 200_000, "%+v", est)
	// The cap lifted and a probe sends 2 Mbit/s again: it follows.
	p.capacity, p.rate = 0, 2_000_000
	p.run(3 * time.Second)
	est = p.estimate()
	require.False(t, est.Congested, "%+v", est)
	require.Greater(t, est.Acked, 1_500_000, "%+v", est)
	require.Greater(t, est.Bitrate, est.Acked, "%+v", est)
}

func TestDuplicateFeedbackCountsOnce(t *testing.T) {
	a := newPath(bwe.Config{})
	a.loss = 0.3
	a.run(time.Second)
	b := newPath(bwe.Config{})
	b.loss = 0.3
	// b's receiver delivers every message twice (one compound read by two senders).
	b.run(0)
	for range 1000 {
		for i := range b.feedbacks {
			b.feedbacks = append(b.feedbacks, b.feedbacks[i])
			break
		}
		b.run(time.Millisecond)
	}
	require.Equal(t, a.estimate(), b.estimate())
}

func TestEstimateWithoutFeedback(t *testing.T) {
	e := bwe.New(bwe.Config{})
	est := e.Estimate(0)
	require.Equal(t, 1_000_000, est.Bitrate)
	require.False(t, est.Congested)
	require.Zero(t, est.Feedbacks)
}
