package tests

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/tests/rtcclient"
)

// pacedArrival is a video packet as the viewer got it.
type pacedArrival struct {
	seq uint16
	ts  uint32
	at  time.Time
}

// burstPublisher sends VP8-like video: a key frame of keyPackets 1100-byte packets at once
// every 2 s, one-packet delta frames at 30 frames/s between, and Opus-like audio.
func burstPublisher(ctx context.Context, t *testing.T, video, audio *webrtc.TrackLocalStaticRTP, keyPackets int) {
	payload := make([]byte, 1100)
	apayload := make([]byte, 80)
	vt := time.NewTicker(time.Second / 30)
	at := time.NewTicker(20 * time.Millisecond)
	defer vt.Stop()
	defer at.Stop()
	var vseq, aseq uint16
	var vts, ats uint32
	for frame := 0; ; {
		select {
		case <-ctx.Done():
			return
		case <-vt.C:
			vts += 3000
			n := 1
			payload[1] = 0x01
			if frame%60 == 0 {
				n, payload[1] = keyPackets, 0x00
			}
			for i := range n {
				payload[0] = 0
				if i == 0 {
					payload[0] = 0x10
				}
				vseq++
				_ = video.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, Marker: i == n-1, SequenceNumber: vseq, Timestamp: vts}, Payload: payload})
			}
			frame++
		case <-at.C:
			aseq++
			ats += 960
			_ = audio.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: aseq, Timestamp: ats}, Payload: apayload})
		}
	}
}

// TestPacingSpreadsKeyFrames publishes key frames of 30 packets (33 kB) sent at once, to a
// node whose viewers' estimates are held at 800 kbit/s (BWEMaxBitrate): paced at 2.5 times
// that (250 kB/s), each key frame reaches a real pion viewer spread over time instead of
// in one burst, and nothing is lost on the loopback path. Only lower bounds on time are
// asserted: a key frame's packets arrive over at least half of what its bytes beyond two
// burst windows take at the pacing rate. A second viewer joining later gets its cache replay
// (the key frame and what followed it) whole and in order: it goes before the viewer's first
// feedback, unpaced, so that the first frame is not held back.
func TestPacingSpreadsKeyFrames(t *testing.T) {
	const (
		keyPackets = 30
		estimate   = 800_000
		pacing     = 2.5 * estimate / 8 // bytes per second
		window     = pacing * 0.040     // the pacer's burst (40 ms)
	)
	cfg := bweNodeConfig(t, "pace")
	cfg.BWEMaxBitrate = estimate
	node := startNode(t, cfg)
	api := clientAPI(t)
	room := newRoom("pace")
	ctx := ctxT(t, 60*time.Second)

	video, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, "video", "pub")
	require.NoError(t, err)
	audio, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, "audio", "pub")
	require.NoError(t, err)
	pub, err := rtcclient.StartWHIP(ctx, api, node.HTTPURL()+"/whip/"+room, []webrtc.TrackLocal{video, audio}, nil, asPublisher(t, room))
	require.NoError(t, err)
	run, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { burstPublisher(run, t, video, audio, keyPackets) })
	t.Cleanup(func() {
		stop()
		wg.Wait()
		_ = pub.Close(true)
	})

	first := pacedViewer(ctx, t, api, node.HTTPURL(), room)
	started := time.Now()

	// A second viewer joins 3.5 s in, 1.5 s after a key frame: the node replays it the key
	// frame and what followed from its cache (~75 packets, 83 kB).
	time.Sleep(3500 * time.Millisecond)
	late := pacedViewer(ctx, t, api, node.HTTPURL(), room)

	// Three key frames after the first (the first may come from the cache, partly).
	time.Sleep(6500*time.Millisecond - time.Since(started))
	stop()
	wg.Wait()
	time.Sleep(time.Second) // what is queued drains
	arrivals := first()
	require.NotEmpty(t, arrivals)
	// The late viewer gets its replay and what follows, nothing lost or reordered.
	replay := late()
	require.Greater(t, len(replay), 50)
	t.Logf("late viewer: first 50 packets over %v (its replay, unpaced before the first feedback)", replay[49].at.Sub(replay[0].at))
	for i := 1; i < len(replay); i++ {
		require.Equal(t, replay[i-1].seq+1, replay[i].seq, "late viewer: packet lost or reordered after %d", replay[i-1].seq)
	}

	// Nothing lost: the viewer's sequence numbers have no gap.
	for i := 1; i < len(arrivals); i++ {
		require.Equal(t, arrivals[i-1].seq+1, arrivals[i].seq, "packet lost or reordered after %d", arrivals[i-1].seq)
	}
	// Each whole key frame (keyPackets packets with one timestamp) spread.
	frames := map[uint32][]time.Time{}
	for _, a := range arrivals {
		frames[a.ts] = append(frames[a.ts], a.at)
	}
	minSpread := time.Duration((keyPackets*1112 - 2*window) / pacing / 2 * float64(time.Second))
	keys := 0
	for _, at := range frames {
		if len(at) != keyPackets {
			continue
		}
		keys++
		spread := at[len(at)-1].Sub(at[0])
		t.Logf("key frame of %d packets arrived over %v (lower bound %v)", len(at), spread, minSpread)
		require.GreaterOrEqual(t, spread, minSpread)
	}
	require.GreaterOrEqual(t, keys, 2, "key frames seen whole")
	st := node.Pacing()
	t.Logf("pacing: queued %d packets (%d B), dropped %d, delay sum %v", st.Queued, st.QueuedBytes, st.Dropped, st.DelaySum)
	require.Positive(t, st.Queued)
	require.Zero(t, st.Dropped)
}

// pacedViewer plays room over WHEP with a pion viewer and returns what its video got so far.
func pacedViewer(ctx context.Context, t *testing.T, api *webrtc.API, base, room string) func() []pacedArrival {
	t.Helper()
	var mu sync.Mutex
	var got []pacedArrival
	viewer, err := rtcclient.UntilPublished(ctx, func() (*rtcclient.Session, error) {
		return rtcclient.StartWHEP(ctx, api, base+"/whep/"+room, []webrtc.RTPCodecType{webrtc.RTPCodecTypeVideo, webrtc.RTPCodecTypeAudio},
			func(tr *webrtc.TrackRemote) {
				for {
					pkt, _, err := tr.ReadRTP()
					if err != nil {
						return
					}
					if tr.Kind() != webrtc.RTPCodecTypeVideo {
						continue
					}
					mu.Lock()
					got = append(got, pacedArrival{seq: pkt.SequenceNumber, ts: pkt.Timestamp, at: time.Now()})
					mu.Unlock()
				}
			}, asViewer(t, room))
	})
	require.NoError(t, err)
	t.Cleanup(func() { _ = viewer.Close(true) })
	return func() []pacedArrival {
		mu.Lock()
		defer mu.Unlock()
		return append([]pacedArrival(nil), got...)
	}
}
