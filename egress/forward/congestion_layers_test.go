package forward_test

import (
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/egress/forward"
	"github.com/jetmedia/jetmedia/pipeline/mediabus"
)

// pathEstimate is one viewer's estimate, changed by the test (the seam rtc.Estimates fills).
type pathEstimate struct {
	mu        sync.Mutex
	bitrate   int
	congested bool
}

func (e *pathEstimate) Estimate(string) (string, int, bool, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return "viewer", e.bitrate, e.congested, true
}

func (e *pathEstimate) set(bitrate int, congested bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.bitrate, e.congested = bitrate, congested
}

// TestCongestionMovesSimulcastLayers: a simulcast viewer over real NATS follows its estimate
// down to the lowest layer (at that layer's key frame, with no gap in its sequence numbers),
// is paused only when even the lowest layer does not fit, and climbs back (straight to the top
// when the estimate carries it) when the estimate recovers.
func TestCongestionMovesSimulcastLayers(t *testing.T) {
	bus, pubConn := startBus(t)
	pub := mediabus.NewMediaBus(pubConn)
	layers := []string{"q", "h", "f"}
	senders := map[string]*mediabus.TrackSender{}
	for _, l := range layers {
		senders[l] = pub.Sender("r", "cam", l)
	}
	hub := forward.NewHub(bus)
	t.Cleanup(hub.Close)
	est := &pathEstimate{bitrate: 5_000_000}
	cc := &forward.Congestion{Estimates: est}
	hub.Congest(cc)

	var (
		kmu       sync.Mutex
		keyframes []string // the layers switches and resumes asked key frames of
	)
	track := &forward.Track{Hub: hub, Room: "r", TrackID: "cam", Stream: "s", MediaKind: "video",
		Codec: "video/VP8", Layers: layers,
		OnKeyframeRequest: func(layer string) { kmu.Lock(); keyframes = append(keyframes, layer); kmu.Unlock() }}
	col := &collector{}
	out := forward.NewOutput(9, 96, col)
	out.StartAtKeyframe(forward.KeyframeStart("video/VP8")) // as Bind does for a video viewer
	require.NoError(t, track.BindForTest("sender-1", out))
	t.Cleanup(track.Detach)
	track.StartForTest() // its transport is up
	require.Equal(t, "f", track.Layer(), "nothing known: the top layer")
	require.NoError(t, bus.Flush())

	// Each 10 ms tick: q 200 B (160 kbit/s), h 600 B (480 kbit/s), f two of 1100 B
	// (1.76 Mbit/s); every layer a key frame each 250 ms. Congestion steps each 500 ms of
	// the test's clock; the packets themselves go through NATS.
	now := time.Unix(1000, 0)
	seq := map[string]uint16{"q": 100, "h": 2000, "f": 4000}
	ssrc := map[string]uint32{"q": 0xA, "h": 0xB, "f": 0xC}
	size := map[string]int{"q": 200, "h": 600, "f": 1100}
	tick := 0
	send := func(l string, key bool) {
		pkt := vp8(t, ssrc[l], seq[l], uint32(tick)*900, key)
		pkt = append(pkt, make([]byte, size[l]-len(pkt))...)
		require.NoError(t, senders[l].Send(pkt))
		seq[l]++
	}
	run := func(maxTicks int, done func() bool) bool {
		for range maxTicks {
			key := tick%25 == 0
			send("q", key)
			send("h", key)
			send("f", key)
			send("f", false)
			tick++
			now = now.Add(10 * time.Millisecond)
			if tick%50 == 0 {
				require.NoError(t, pubConn.Flush())
				time.Sleep(5 * time.Millisecond) // let NATS deliver before measuring
				cc.Step(now)
				if done != nil && done() {
					return true
				}
			}
		}
		return done == nil
	}
	layerIs := func(l string) func() bool {
		return func() bool { return track.Layer() == l }
	}

	run(200, nil) // 2 s of plenty
	require.Equal(t, "f", track.Layer())
	require.Zero(t, cc.LayerDowns.Load())

	est.set(300_000, true) // a 300 kbit/s path: only q (160 kbit/s) fits 90 % of it
	require.True(t, run(500, layerIs("q")), "the viewer moved to the low layer (now %s, target %+v)", track.Layer(), track.Target())
	kmu.Lock()
	require.NotEmpty(t, keyframes)
	require.Equal(t, "q", keyframes[len(keyframes)-1], "the switch asked a key frame of the layer it waited for, not of every layer: %q", keyframes)
	kmu.Unlock()
	t.Logf("300 kbit/s: layer %s after %d layer downs; target bitrate %d", track.Layer(), cc.LayerDowns.Load(), track.Target().Bitrate)
	atQ := col.len()
	run(200, nil)
	require.Equal(t, "q", track.Layer(), "stays low while the estimate does")
	require.Eventually(t, func() bool { return col.len() >= atQ+150 }, 5*time.Second, 5*time.Millisecond,
		"the viewer keeps receiving on the new layer (%d packets, %d before)", col.len(), atQ)
	require.Zero(t, cc.Pauses.Load(), "the lowest layer fits: nothing paused")

	est.set(60_000, true) // not even q fits: paused
	require.True(t, run(400, func() bool { return cc.Pauses.Load() == 1 }), "paused when not even q fits for 2 s")
	paused := col.len()
	run(100, nil)
	require.LessOrEqual(t, col.len(), paused+2, "nothing is sent while paused")

	est.set(5_000_000, false) // lifted: an estimate that carries the top layer goes straight there
	require.True(t, run(1000, layerIs("f")), "back to the top layer (now %s)", track.Layer())
	require.EqualValues(t, 1, cc.Resumes.Load())
	atF := col.len()
	run(100, nil)
	require.Eventually(t, func() bool { return col.len() >= atF+150 }, 5*time.Second, 5*time.Millisecond,
		"the viewer receives the top layer again (%d packets, %d before)", col.len(), atF)
	require.GreaterOrEqual(t, cc.LayerUps.Load(), uint64(1), "up again")
	// From the top layer straight to an estimate below even q's rate: the viewer is moved to
	// q and sent it for a while before it is paused (the estimate right after an overflow
	// undershoots).
	pauses := cc.Pauses.Load()
	est.set(60_000, true)
	require.True(t, run(500, layerIs("q")), "moved down to q first")
	require.Equal(t, pauses, cc.Pauses.Load(), "not paused before the lowest layer was tried")
	require.True(t, run(500, func() bool { return cc.Pauses.Load() == pauses+1 }), "paused once q was tried")
	est.set(5_000_000, false)
	require.True(t, run(1000, layerIs("f")), "back to the top layer again (now %s)", track.Layer())
	t.Logf("recovered: layer downs %d, ups %d, pauses %d, resumes %d", cc.LayerDowns.Load(), cc.LayerUps.Load(),
		cc.Pauses.Load(), cc.Resumes.Load())

	col.mu.Lock()
	defer col.mu.Unlock()
	for i := 1; i < len(col.pkts); i++ {
		require.Equal(t, col.pkts[i-1].SequenceNumber+1, col.pkts[i].SequenceNumber, "no gap for the viewer at %d", i)
		require.Equal(t, uint32(9), col.pkts[i].SSRC)
	}
}
