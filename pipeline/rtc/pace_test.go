package rtc

import (
	"sync"
	"testing"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/logging"
	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/pipeline/pacer"
)

type nopBatch struct{}

func (nopBatch) Cork()   {}
func (nopBatch) Uncork() {}

// pacedChain builds a PeerConnection's interceptors as the edge does (the node's estimator
// and the pacing) and binds a video stream with RTX and an audio stream whose packets land in
// got, each with the time it left.
type sent struct {
	ssrc uint32
	seq  uint16
	tcc  bool
	at   time.Time
}

type pacedChain struct {
	chain        interceptor.Interceptor
	video, audio interceptor.RTPWriter
	est          *twccEstimator
	p            *pacing
	mu           sync.Mutex
	got          []sent
}

func newPacedChain(t testing.TB, cfg PacingConfig) *pacedChain {
	t.Helper()
	me := &webrtc.MediaEngine{}
	ir := &interceptor.Registry{}
	set, p, err := addBWE(me, ir, BWEConfig{Pacing: cfg}, logging.NewDefaultLoggerFactory(), nopBatch{})
	require.NoError(t, err)
	chain, err := ir.Build("pc")
	require.NoError(t, err)
	c := &pacedChain{chain: chain, p: p}
	c.est = set.byPC["pc"].(*twccEstimator)
	sink := interceptor.RTPWriterFunc(func(h *rtp.Header, payload []byte, _ interceptor.Attributes) (int, error) {
		c.mu.Lock()
		c.got = append(c.got, sent{ssrc: h.SSRC, seq: h.SequenceNumber, tcc: h.GetExtension(5) != nil, at: time.Now()})
		c.mu.Unlock()
		return h.MarshalSize() + len(payload), nil
	})
	tcc := []interceptor.RTPHeaderExtension{{URI: sdp.TransportCCURI, ID: 5}}
	c.video = chain.BindLocalStream(&interceptor.StreamInfo{ID: "v", SSRC: 1, SSRCRetransmission: 2, MimeType: "video/VP8", RTPHeaderExtensions: tcc}, sink)
	c.audio = chain.BindLocalStream(&interceptor.StreamInfo{ID: "a", SSRC: 3, MimeType: "audio/opus", RTPHeaderExtensions: tcc}, sink)
	t.Cleanup(func() {
		_ = chain.Close()
		if p != nil {
			p.close()
		}
	})
	return c
}

func (c *pacedChain) sent() []sent {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]sent(nil), c.got...)
}

// TestPacingSpreadsBurst writes a key frame's worth of packets at once on a connection whose
// estimate is 200 kbit/s: the first leave at once (the burst window), the rest are queued,
// drained by the edge's goroutine at 2.5 times the estimate, in order, with the audio and
// retransmissions written meanwhile in their places, and numbered for transport-cc when they
// leave (the estimator sees the path's delay, not the queue's).
func TestPacingSpreadsBurst(t *testing.T) {
	// 72 kB at 62.5 kB/s take over a second: past the default 500 ms bound.
	c := newPacedChain(t, PacingConfig{Pacer: pacer.Config{MaxDelay: 3 * time.Second}})
	c.est.rate.Store(200_000) // 62.5 kB/s of pacing
	const n, size = 60, 1100
	payload := make([]byte, size)
	start := time.Now()
	for i := range n {
		h := rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: uint16(i), SSRC: 1}
		_, err := c.video.Write(&h, payload, nil)
		require.NoError(t, err)
		payload[0]++ // the writer's buffer is reused: the queue must have copied it
		if i%10 == 0 {
			h := rtp.Header{Version: 2, PayloadType: 111, SequenceNumber: uint16(i), SSRC: 3}
			_, err := c.audio.Write(&h, payload[:100], nil)
			require.NoError(t, err)
			h = rtp.Header{Version: 2, PayloadType: 97, SequenceNumber: uint16(i), SSRC: 2}
			_, err = c.video.Write(&h, payload[:200], nil)
			require.NoError(t, err)
		}
	}
	audio := 0
	for _, s := range c.sent() {
		if s.ssrc == 3 {
			audio++
		}
	}
	require.Equal(t, n/10, audio, "audio waits for nothing")
	for deadline := time.Now().Add(10 * time.Second); len(c.sent()) < n+2*n/10 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	require.Len(t, c.sent(), n+2*n/10, "%+v", c.p.stats())
	got := c.sent()
	var video []sent
	rtx := -1
	for _, s := range got {
		require.True(t, s.tcc, "every packet numbered")
		switch s.ssrc {
		case 1:
			video = append(video, s)
		case 2:
			require.Greater(t, int(s.seq), rtx, "retransmissions in order")
			rtx = int(s.seq)
		}
	}
	for i, s := range video {
		require.Equal(t, uint16(i), s.seq, "video in order")
	}
	// Lower bound only: what exceeded the 40 ms window (~12.5 kB of the 72 kB) took at
	// least half of its size over the pacing rate.
	total := n*(size+12) + n/10*(200+12)
	excess := float64(total - 12_500 - 3000)
	spread := video[len(video)-1].at.Sub(start)
	require.GreaterOrEqual(t, spread, time.Duration(excess/62_500/2*float64(time.Second)), "spread over %v", spread)
	st := c.p.stats()
	require.Positive(t, st.Queued)
	require.Zero(t, st.Dropped)
	t.Logf("%d packets (%d B) left over %v; queued %d, delay sum %v", len(got), total, spread, st.Queued, st.DelaySum)
}

// TestPacingUnlimitedAddsNothing: within the budget every packet leaves on the writer's call.
func TestPacingUnlimitedAddsNothing(t *testing.T) {
	c := newPacedChain(t, PacingConfig{})
	c.est.rate.Store(20_000_000)
	payload := make([]byte, 1100)
	for i := range 20 {
		h := rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: uint16(i), SSRC: 1}
		_, err := c.video.Write(&h, payload, nil)
		require.NoError(t, err)
		require.Len(t, c.sent(), i+1, "packet %d waited", i)
	}
	require.Zero(t, c.p.stats().Queued)
}

// TestPacingBoundsDrop: a queue past its bound drops its oldest video, counted.
func TestPacingBoundsDrop(t *testing.T) {
	c := newPacedChain(t, PacingConfig{})
	c.est.rate.Store(100_000)
	payload := make([]byte, 1100)
	for i := range 2000 {
		h := rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: uint16(i), SSRC: 1}
		_, err := c.video.Write(&h, payload, nil)
		require.NoError(t, err)
	}
	st := c.p.stats()
	require.Positive(t, st.Dropped)
	require.EqualValues(t, st.Dropped*uint64(1100+12), st.DroppedBytes)
}

// BenchmarkPacedWrite is a video packet's cost through the pacing interceptor alone (the
// estimator's numbering is BenchmarkEstimator's): unlimited is a connection whose budget
// carries it (sent on the caller's goroutine), queued one whose budget is spent (copied
// into a pooled buffer and queued; the queue's bounds drop the oldest).
func BenchmarkPacedWrite(b *testing.B) {
	for _, c := range []struct {
		name string
		rate int64
	}{{"unlimited", 1 << 50}, {"queued", 1}} {
		b.Run(c.name, func(b *testing.B) {
			p := newPacing(PacingConfig{}, nopBatch{})
			defer p.close()
			est := &twccEstimator{}
			est.rate.Store(c.rate)
			f := &pacingFactory{p: p, set: &Estimates{byPC: map[string]connEstimator{"pc": est}}}
			ic, err := f.NewInterceptor("pc")
			if err != nil {
				b.Fatal(err)
			}
			defer ic.Close()
			w := ic.BindLocalStream(&interceptor.StreamInfo{ID: "v", SSRC: 1, MimeType: "video/VP8"},
				interceptor.RTPWriterFunc(func(h *rtp.Header, p []byte, _ interceptor.Attributes) (int, error) {
					return len(p), nil
				}))
			payload := make([]byte, 1100)
			ext := make([]rtp.Extension, 0, 4)
			var h rtp.Header
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				h = rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: uint16(i), SSRC: 1, Extensions: ext[:0]}
				if _, err := w.Write(&h, payload, nil); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestPacingNeedsTransportCC: a viewer that negotiated no transport-cc sends no feedback, so
// it has no estimate to be paced by: its bursts leave as they come.
func TestPacingNeedsTransportCC(t *testing.T) {
	me := &webrtc.MediaEngine{}
	ir := &interceptor.Registry{}
	_, p, err := addBWE(me, ir, BWEConfig{}, logging.NewDefaultLoggerFactory(), nopBatch{})
	require.NoError(t, err)
	defer p.close()
	chain, err := ir.Build("pc")
	require.NoError(t, err)
	defer chain.Close()
	n := 0
	w := chain.BindLocalStream(&interceptor.StreamInfo{ID: "v", SSRC: 1, MimeType: "video/VP8"},
		interceptor.RTPWriterFunc(func(h *rtp.Header, payload []byte, _ interceptor.Attributes) (int, error) {
			n++
			return len(payload), nil
		}))
	payload := make([]byte, 1100)
	for i := range 200 {
		h := rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: uint16(i), SSRC: 1}
		_, err := w.Write(&h, payload, nil)
		require.NoError(t, err)
	}
	require.Equal(t, 200, n)
	require.Zero(t, p.stats().Queued)
}

// TestPacingDrainsWhileConnectionsKeepQueueing: connections that get a queue one after the
// other, more often than the drain's tick, do not put the drain off: the first connection's
// queue drains while new ones keep coming (a ticker reset at every new queue never fired).
func TestPacingDrainsWhileConnectionsKeepQueueing(t *testing.T) {
	p := newPacing(PacingConfig{Tick: 20 * time.Millisecond}, nopBatch{})
	defer p.close()
	payload := make([]byte, 1100)
	firstDrained := make(chan struct{})
	deadline := time.After(10 * time.Second)
	for i := 0; ; i++ {
		select {
		case <-firstDrained:
			return
		case <-deadline:
			t.Fatalf("the first queue did not drain while %d connections got one, 5 ms apart", i)
		default:
		}
		est := &twccEstimator{}
		est.rate.Store(100_000)
		f := &pacingFactory{p: p, set: &Estimates{byPC: map[string]connEstimator{"pc": est}}}
		ic, err := f.NewInterceptor("pc")
		require.NoError(t, err)
		defer ic.Close()
		first := i == 0
		w := ic.BindLocalStream(&interceptor.StreamInfo{ID: "v", SSRC: 1, MimeType: "video/VP8"},
			interceptor.RTPWriterFunc(func(h *rtp.Header, p []byte, _ interceptor.Attributes) (int, error) {
				if first && h.SequenceNumber == 9 {
					close(firstDrained)
				}
				return len(p), nil
			}))
		for seq := range 10 { // 11 kB against a 3 kB burst: the last ones wait
			h := rtp.Header{Version: 2, SequenceNumber: uint16(seq), SSRC: 1}
			_, err := w.Write(&h, payload, nil)
			require.NoError(t, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestPacingFloorFollowsWhatIsSent: an estimate below what a connection is sent (a dip of the
// delay-based half on a loaded machine) does not throttle it while the estimator sees no
// congestion: after a second the pacer paces at 1.25 times what it was offered, and its queue
// stops dropping. With congestion it paces at the estimate and keeps dropping.
func TestPacingFloorFollowsWhatIsSent(t *testing.T) {
	for _, congested := range []bool{false, true} {
		p := newPacing(PacingConfig{}, nopBatch{})
		est := &twccEstimator{}
		est.rate.Store(200_000) // paced at 500 kbit/s
		est.congested.Store(congested)
		f := &pacingFactory{p: p, set: &Estimates{byPC: map[string]connEstimator{"pc": est}}}
		ic, err := f.NewInterceptor("pc")
		require.NoError(t, err)
		w := ic.BindLocalStream(&interceptor.StreamInfo{ID: "v", SSRC: 1, MimeType: "video/VP8"},
			interceptor.RTPWriterFunc(func(_ *rtp.Header, p []byte, _ interceptor.Attributes) (int, error) { return len(p), nil }))
		payload := make([]byte, 1100)
		var atSettled uint64
		start := time.Now()
		for seq := 0; time.Since(start) < 3*time.Second; seq++ {
			if atSettled == 0 && time.Since(start) > 1500*time.Millisecond {
				atSettled = p.stats().Dropped + 1
			}
			h := rtp.Header{Version: 2, SequenceNumber: uint16(seq), SSRC: 1}
			_, err := w.Write(&h, payload, nil)
			require.NoError(t, err)
			time.Sleep(5 * time.Millisecond) // at most 1.8 Mbit/s offered
		}
		dropped := p.stats().Dropped
		t.Logf("congested %v: dropped %d by 1.5 s, %d by 3 s", congested, atSettled-1, dropped)
		if congested {
			require.Greater(t, dropped, atSettled-1, "paced at the estimate: the queue keeps dropping")
		} else {
			require.Equal(t, atSettled-1, dropped, "paced at the floor: no drop after the first measured second")
		}
		require.NoError(t, ic.Close())
		p.close()
	}
}
