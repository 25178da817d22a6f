package forward_test

import (
	"sync"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/egress/forward"
	"github.com/jetmedia/jetmedia/pipeline/audiolevel"
	"github.com/jetmedia/jetmedia/pipeline/mediabus"
)

// TestHubTopAudio: three audio tracks, MaxStreams 1: only the speaker's packets reach the
// viewer, with sequence numbers that run on without a gap across what was held back, and the
// speakers are told as they change. Real NATS carries both RTP and the level reports.
func TestHubTopAudio(t *testing.T) {
	bus, pubConn := startBus(t)
	pub := mediabus.NewMediaBus(pubConn)
	var mu sync.Mutex
	var told [][]audiolevel.Speaker
	hub := forward.NewHub(bus)
	hub.Audio(forward.AudioConfig{
		MaxStreams: 1,
		SubscribeLevels: func(room string, fn func([]byte)) (func() error, error) {
			sub, err := bus.SubscribeLevels(room, fn)
			if err != nil {
				return nil, err
			}
			return sub.Unsubscribe, nil
		},
		OnSpeakers: func(room string, sp []audiolevel.Speaker) {
			require.Equal(t, "r1", room)
			mu.Lock()
			told = append(told, sp)
			mu.Unlock()
		},
	})
	t.Cleanup(hub.Close)

	tracks := []string{"ta", "tb", "tc"}
	views := map[string]*collector{}
	for i, tr := range tracks {
		views[tr] = &collector{}
		_, detach, err := hub.AttachAudio("r1", tr, forward.NewOutput(uint32(10+i), 111, views[tr]))
		require.NoError(t, err)
		t.Cleanup(detach)
	}
	// A viewer that chose the track (WHEP) gets all of it, whatever the room's choice.
	chosen := &collector{}
	_, detachChosen, err := hub.Attach("r1", "ta", forward.NewOutput(99, 111, chosen))
	require.NoError(t, err)
	t.Cleanup(detachChosen)
	require.NoError(t, bus.Flush())
	seq := map[string]uint16{}
	send := func(tr string) {
		seq[tr]++
		p := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 111, SequenceNumber: seq[tr], SSRC: 0x55}, Payload: []byte("opus")}
		b, err := p.Marshal()
		require.NoError(t, err)
		require.NoError(t, pub.Sender("r1", tr, "0").Send(b))
	}
	report := func(tr string, level uint8, speaking bool) {
		b, err := audiolevel.Report{Track: tr, Level: level, Speaking: speaking}.AppendBinary(nil)
		require.NoError(t, err)
		require.NoError(t, pub.PublishLevel("r1", b))
	}
	flush := func() {
		require.NoError(t, pubConn.Flush())
		require.NoError(t, bus.Flush())
	}

	// Before any report every track is forwarded: none can be judged.
	for _, tr := range tracks {
		send(tr)
	}
	flush()
	require.Eventually(t, func() bool { return views["ta"].len() == 1 && views["tb"].len() == 1 && views["tc"].len() == 1 }, 5*time.Second, 10*time.Millisecond)

	report("ta", 127, false)
	report("tb", 20, true)
	report("tc", 127, false)
	flush()
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(told) > 0 && len(told[len(told)-1]) == 1 && told[len(told)-1][0].Track == "tb"
	}, 5*time.Second, 10*time.Millisecond)
	for range 5 {
		for _, tr := range tracks {
			send(tr)
		}
	}
	flush()
	require.Eventually(t, func() bool { return views["tb"].len() == 6 }, 5*time.Second, 10*time.Millisecond)
	require.Equal(t, 1, views["ta"].len(), "a quiet track is held back")
	require.Equal(t, 1, views["tc"].len())

	// ta takes over: tb stops, ta speaks. ta's next packet follows its last one forwarded.
	report("tb", 127, false)
	report("ta", 15, true)
	flush()
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		last := told[len(told)-1]
		return len(last) == 1 && last[0].Track == "ta"
	}, 5*time.Second, 10*time.Millisecond)
	send("tb")
	// The choice also weighs how long each has spoken (hold, margin), which a loaded machine
	// stretches: send ta's packets until one gets through.
	sentTA := 0
	for deadline := time.Now().Add(10 * time.Second); views["ta"].len() < 2; time.Sleep(20 * time.Millisecond) {
		require.False(t, time.Now().After(deadline), "the new speaker's packets are forwarded")
		send("ta")
		sentTA++
		flush()
	}
	first, second := views["ta"].at(0).SequenceNumber, views["ta"].at(1).SequenceNumber
	require.Equal(t, first+1, second, "held-back packets leave no gap in the viewer's numbering")
	require.Equal(t, 6, views["tb"].len(), "the one who spoke last is held back behind the speaker")
	require.Eventually(t, func() bool { return chosen.len() == 6+sentTA }, 5*time.Second, 10*time.Millisecond, "the plain viewer of ta got every packet")
}

// BenchmarkAudioGate is what the audio choice adds to a forwarded audio packet: the gate's
// check, and the copy that keeps sequence numbers continuous once packets were held back.
func BenchmarkAudioGate(b *testing.B) {
	p := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 111, SequenceNumber: 1, SSRC: 0x55}, Payload: make([]byte, 120)}
	pkt, err := p.Marshal()
	require.NoError(b, err)
	for _, held := range []bool{false, true} {
		name := "open"
		if held {
			name = "open-after-held"
		}
		b.Run(name, func(b *testing.B) {
			g := forward.NewBenchGate(held)
			b.ReportAllocs()
			for b.Loop() {
				g.Forward(pkt)
			}
		})
	}
}
