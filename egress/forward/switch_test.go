package forward_test

import (
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/egress/forward"
	"github.com/jetmedia/jetmedia/pipeline/mediabus"
)

// vp8 is a VP8 RTP packet of a layer: a key frame's first packet when key.
func vp8(t *testing.T, ssrc uint32, seq uint16, ts uint32, key bool) []byte {
	t.Helper()
	payload := []byte{0x10, 0x01, 0, 0} // start of partition 0, P=1: delta frame
	if key {
		payload[1] = 0x00
	}
	b, err := (&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: seq, Timestamp: ts, SSRC: ssrc,
		Marker: true}, Payload: payload}).Marshal()
	require.NoError(t, err)
	return b
}

// TestHubLayerSwitch: a viewer of layer "q" switched to "f" keeps receiving "q" until "f"
// sends a key frame, then receives only "f" with continuous sequence numbers, and the hub
// holds a subscription only to the layers someone watches.
func TestHubLayerSwitch(t *testing.T) {
	bus, pubConn := startBus(t)
	pub := mediabus.NewMediaBus(pubConn)
	low, high := pub.Sender("r", "t", "q"), pub.Sender("r", "t", "f")
	hub := forward.NewHub(bus)
	t.Cleanup(hub.Close)

	c := &collector{}
	out := forward.NewOutput(77, 100, c)
	_, detach, err := hub.AttachLayer("r", "t", "q", out)
	require.NoError(t, err)
	require.Equal(t, 1, hub.Tracks())
	require.NoError(t, bus.Flush())

	var seqLow, seqHigh uint16 = 100, 5000
	sendLow := func(key bool) {
		require.NoError(t, low.Send(vp8(t, 0xA, seqLow, uint32(seqLow)*3000, key)))
		seqLow++
	}
	sendHigh := func(key bool) {
		require.NoError(t, high.Send(vp8(t, 0xB, seqHigh, uint32(seqHigh)*90, key)))
		seqHigh++
	}
	for range 3 {
		sendLow(false)
	}
	require.Eventually(t, func() bool { return c.len() == 3 }, 5*time.Second, 5*time.Millisecond)

	moved := make(chan *forward.Fanout, 1)
	_, err = hub.Switch("r", "t", "h", "f", out, nil, nil)
	require.ErrorIs(t, err, forward.ErrNotAttached)
	cancel, err := hub.Switch("r", "t", "q", "f", out,
		func(pkt []byte) bool { return forward.SwitchPoint("video/VP8", pkt) },
		func(f *forward.Fanout, d func()) { detach = d; moved <- f })
	require.NoError(t, err)
	require.Equal(t, 2, hub.Tracks(), "both layers subscribed while the switch waits")
	require.NoError(t, bus.Flush())

	// Delta frames of "f" do not move the viewer; "q" still plays.
	sendHigh(false)
	sendHigh(false)
	sendLow(false)
	require.Eventually(t, func() bool { return c.len() == 4 }, 5*time.Second, 5*time.Millisecond)
	sendHigh(true)
	select {
	case <-moved:
	case <-time.After(5 * time.Second):
		t.Fatal("the key frame of the new layer did not move the viewer")
	}
	require.False(t, cancel(), "a switch that happened cannot be cancelled")
	sendLow(false) // nobody watches "q" now: not delivered
	sendHigh(false)
	require.Eventually(t, func() bool { return c.len() == 6 }, 5*time.Second, 5*time.Millisecond)
	require.Equal(t, 1, hub.Tracks(), "the old layer's subscription ended")

	pkts := c.pkts
	for i := 1; i < len(pkts); i++ {
		require.Equal(t, pkts[i-1].SequenceNumber+1, pkts[i].SequenceNumber, "no gap at packet %d", i)
		require.Equal(t, uint32(77), pkts[i].SSRC)
		require.Positive(t, int32(pkts[i].Timestamp-pkts[i-1].Timestamp), "timestamps go forward at %d", i)
	}
	require.Equal(t, []byte{0x10, 0x00, 0, 0}, pkts[4].Payload, "the first packet of the new layer is its key frame")

	// A switch cancelled before its key frame leaves the viewer where it was and unsubscribes.
	cancel, err = hub.Switch("r", "t", "f", "q", out, func([]byte) bool { return false }, nil)
	require.NoError(t, err)
	require.Equal(t, 2, hub.Tracks())
	require.True(t, cancel())
	require.Equal(t, 1, hub.Tracks())
	detach()
	require.Equal(t, 0, hub.Tracks())
}
