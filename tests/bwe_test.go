package tests

import (
	"context"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/cmd/jetmedia/app"
	"github.com/jetmedia/jetmedia/pipeline/rtc"
	"github.com/jetmedia/jetmedia/tests/netimpair"
	"github.com/jetmedia/jetmedia/tests/rtcclient"
)

// ratePublisher publishes VP8-like video at about bitrate bit/s (frames of several packets
// at 30 frames/s, a key frame every 2 s and on request) and Opus-like audio, and records the
// REMBs it receives.
type ratePublisher struct {
	session *rtcclient.Session
	cancel  context.CancelFunc
	wg      sync.WaitGroup

	mu    sync.Mutex
	rembs []float32
}

func publishAt(t *testing.T, ctx context.Context, api *webrtc.API, node *app.Node, room string, bitrate int) *ratePublisher {
	t.Helper()
	video, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, "video", "pub")
	require.NoError(t, err)
	audio, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, "audio", "pub")
	require.NoError(t, err)
	p := &ratePublisher{}
	key := make(chan struct{}, 1)
	onRTCP := func(_ int, pkts []rtcp.Packet) {
		for _, pk := range pkts {
			if r, ok := pk.(*rtcp.ReceiverEstimatedMaximumBitrate); ok {
				p.mu.Lock()
				p.rembs = append(p.rembs, r.Bitrate)
				p.mu.Unlock()
			}
		}
		if rtcclient.KeyFrameRequests(pkts) > 0 {
			select {
			case key <- struct{}{}:
			default:
			}
		}
	}
	p.session, err = rtcclient.StartWHIP(ctx, api, node.HTTPURL()+"/whip/"+room, []webrtc.TrackLocal{video, audio}, onRTCP, asPublisher(t, room))
	require.NoError(t, err)
	run, cancel := context.WithCancel(context.Background())
	p.cancel = cancel
	p.wg.Go(func() { sendAt(run, video, audio, bitrate, key) })
	t.Cleanup(func() { p.close() })
	return p
}

func (p *ratePublisher) close() {
	p.cancel()
	p.wg.Wait()
	_ = p.session.Close(true)
}

func (p *ratePublisher) lastREMB() (float32, int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.rembs) == 0 {
		return 0, 0
	}
	return p.rembs[len(p.rembs)-1], len(p.rembs)
}

// sendAt sends the frames: 1100-byte packets, as many per frame as the bit rate needs.
func sendAt(ctx context.Context, video, audio *webrtc.TrackLocalStaticRTP, bitrate int, key <-chan struct{}) {
	const size = 1100
	perFrame := max(1, bitrate/30/8/size)
	vt := time.NewTicker(time.Second / 30)
	at := time.NewTicker(20 * time.Millisecond)
	defer vt.Stop()
	defer at.Stop()
	payload := make([]byte, size)
	apayload := make([]byte, 80)
	var vseq, aseq uint16
	var vts, ats uint32
	frame := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-key:
			frame = 0
		case <-vt.C:
			vts += 3000
			for i := range perFrame {
				payload[0] = 0
				if i == 0 {
					payload[0] = 0x10 // start of partition
				}
				payload[1] = 0x01
				if frame%60 == 0 {
					payload[1] = 0x00 // key frame
				}
				vseq++
				_ = video.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, Marker: i == perFrame-1, SequenceNumber: vseq, Timestamp: vts}, Payload: payload})
			}
			frame++
		case <-at.C:
			aseq++
			ats += 960
			_ = audio.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: aseq, Timestamp: ats}, Payload: apayload})
		}
	}
}

// playThrough plays room through a relay in front of the node's media port.
func playThrough(t *testing.T, ctx context.Context, api *webrtc.API, node *app.Node, room string) (*rtcclient.Viewer, *netimpair.Relay) {
	t.Helper()
	relay, err := netimpair.New(node.UDPAddr())
	require.NoError(t, err)
	t.Cleanup(func() { _ = relay.Close() })
	hc := &http.Client{Transport: relay.Answers(node.UDPAddr(), nil)}
	t.Cleanup(hc.CloseIdleConnections)
	v, err := rtcclient.Play(ctx, api, node.HTTPURL(), room, asViewer(t, room), rtcclient.WithHTTPClient(hc))
	require.NoError(t, err)
	t.Cleanup(func() { _ = v.Close() })
	return v, relay
}

// bweNodeConfig is a node whose media port is on loopback only: its one candidate is the
// address the relay stands in for.
func bweNodeConfig(t *testing.T, name string) app.Config {
	cfg := nodeConfig(t, name)
	cfg.UDPHost = "127.0.0.1"
	return cfg
}

// viewerEstimate is the node's estimate of its only viewer.
func viewerEstimate(node *app.Node) (rtc.Estimate, bool) {
	all := node.Estimates().All()
	if len(all) != 1 {
		return rtc.Estimate{}, false
	}
	return all[0], true
}

// TestBandwidthEstimateFollowsCap plays a 1.5 Mbit/s track through a relay whose downlink is
// then capped at 500 kbit/s and released: the viewer's estimate drops below the cap and comes
// back. The times are logged (docs/benchmarks.md), not asserted; the bounds are liveness.
func TestBandwidthEstimateFollowsCap(t *testing.T) {
	node := startNode(t, bweNodeConfig(t, "bwe"))
	api := clientAPI(t)
	room := newRoom("bwe")
	ctx := ctxT(t, 120*time.Second)
	publishAt(t, ctx, api, node, room, 1_500_000)
	v, relay := playThrough(t, ctx, api, node, room)
	require.Eventually(t, func() bool { return v.Video.Load() > 100 }, 15*time.Second, 20*time.Millisecond)

	rate := func() (rtc.Estimate, int) {
		e, _ := viewerEstimate(node)
		return e, e.Bitrate
	}
	// Unconstrained: the estimate climbs past the track's rate.
	start := time.Now()
	require.Eventually(t, func() bool { _, b := rate(); return b > 1_500_000 }, 30*time.Second, 100*time.Millisecond,
		"estimate %+v", func() rtc.Estimate { e, _ := rate(); return e }())
	t.Logf("unconstrained: estimate above 1.5 Mbit/s after %v", time.Since(start).Round(100*time.Millisecond))

	const capRate = 500_000
	before := relay.Down()
	relay.SetDown(netimpair.Link{Rate: capRate, Queue: 300 * time.Millisecond})
	capped := time.Now()
	require.Eventually(t, func() bool { _, b := rate(); return b < capRate }, 30*time.Second, 100*time.Millisecond)
	e, _ := rate()
	t.Logf("cap %d bit/s: estimate %d bit/s after %v (loss %.3f, loss-based %d, delay-based %d)", capRate, e.Bitrate,
		time.Since(capped).Round(100*time.Millisecond), e.Loss, e.LossBitrate, e.DelayBitrate)
	time.Sleep(5 * time.Second)
	after := relay.Down()
	used := float64(after.PassedBytes-before.PassedBytes) * 8 / time.Since(capped).Seconds()
	e, _ = rate()
	t.Logf("under the cap: %.0f bit/s delivered (%.0f%% of the cap), %d dropped by the queue, estimate %d, video paused %d resumed %d times",
		used, 100*used/capRate, after.Overflow-before.Overflow, e.Bitrate, node.Congestion().Pauses.Load(), node.Congestion().Resumes.Load())
	require.Positive(t, node.Congestion().Pauses.Load(), "the video the cap cannot carry is paused")

	relay.SetDown(netimpair.Link{})
	freed := time.Now()
	// The video is back when a second brings 90 % of its packets (1.5 Mbit/s in 1100 bytes).
	full := int64(1_500_000 / 8 / 1100 * 9 / 10)
	var back time.Duration
	last, lastAt := v.Video.Load(), time.Now()
	require.Eventually(t, func() bool {
		if now := time.Now(); now.Sub(lastAt) >= time.Second {
			if n := v.Video.Load(); back == 0 && n-last >= full {
				back = now.Sub(freed)
			}
			last, lastAt = v.Video.Load(), now
		}
		_, b := rate()
		return back > 0 && b > 1_500_000
	}, 90*time.Second, 100*time.Millisecond)
	t.Logf("cap lifted: video back in full within %v, estimate above 1.5 Mbit/s after %v (paused %d, resumed %d times in all)",
		back.Round(100*time.Millisecond), time.Since(freed).Round(100*time.Millisecond),
		node.Congestion().Pauses.Load(), node.Congestion().Resumes.Load())
	require.Positive(t, v.Video.Load())
}

// TestREMBHoldsPublisher: a publisher receives REMBs carrying --max-publish-bitrate, naming
// its streams.
func TestREMBHoldsPublisher(t *testing.T) {
	cfg := nodeConfig(t, "remb")
	cfg.MaxPublishBitrate = 750_000
	node := startNode(t, cfg)
	ctx := ctxT(t, 60*time.Second)
	room := newRoom("remb")
	p := publishAt(t, ctx, clientAPI(t), node, room, 300_000)
	require.Eventually(t, func() bool { _, n := p.lastREMB(); return n >= 2 }, 10*time.Second, 50*time.Millisecond,
		"REMB arrives at once and then every second")
	got, _ := p.lastREMB()
	require.InDelta(t, 750_000, got, 750_000*0.01, "REMB's mantissa and exponent round a little")
}

// TestLossRepairedWithRTX plays through a relay losing 5 % of the node's packets: video keeps
// arriving, the viewer's NACKs are answered from the node's cache on its RTX stream.
func TestLossRepairedWithRTX(t *testing.T) {
	node := startNode(t, bweNodeConfig(t, "loss"))
	api := clientAPI(t)
	room := newRoom("loss")
	ctx := ctxT(t, 60*time.Second)
	publishAt(t, ctx, api, node, room, 800_000)
	v, relay := playThrough(t, ctx, api, node, room)
	require.Eventually(t, func() bool { return v.Video.Load() > 50 }, 15*time.Second, 20*time.Millisecond)
	relay.SetDown(netimpair.Link{Loss: 0.05, Delay: 10 * time.Millisecond, Jitter: 5 * time.Millisecond})
	before, got := node.Forwarding(), v.Video.Load()
	start := time.Now()
	require.Eventually(t, func() bool {
		s := node.Forwarding()
		return s.NACKs-before.NACKs > 10 && s.RetransmittedRTX-before.RetransmittedRTX > 10 && v.Video.Load()-got > 300
	}, 30*time.Second, 50*time.Millisecond)
	time.Sleep(3 * time.Second)
	s, down := node.Forwarding(), relay.Down()
	el := time.Since(start).Seconds()
	t.Logf("5%% loss for %.1f s: %d packets lost by the relay, %d NACK reports for %d packets, %d resent (%d on RTX), video %d packets/s at the viewer",
		el, down.Lost, s.NACKs-before.NACKs, s.NACKed-before.NACKed, s.Retransmitted-before.Retransmitted,
		s.RetransmittedRTX-before.RetransmittedRTX, int(float64(v.Video.Load()-got)/el))
}
