package tests

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/bluenviron/gortmplib"
	"github.com/bluenviron/gortmplib/pkg/codecs"
	"github.com/pion/webrtc/v4"
	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/cmd/jetmedia/app"
	"github.com/jetmedia/jetmedia/events"
	"github.com/jetmedia/jetmedia/pipeline/auth"
	"github.com/jetmedia/jetmedia/projections"
	"github.com/jetmedia/jetmedia/tests/browser"
)

// requireFFmpeg returns the ffmpeg binary. Without one the test skips loudly, and fails
// under CI=true, where .ci/run installs it.
func requireFFmpeg(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("ffmpeg")
	if err == nil {
		return p
	}
	msg := "ffmpeg not found in PATH: RTMP tests need it (apt-get install -y --no-install-recommends ffmpeg)"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	fmt.Fprintln(os.Stderr, "SKIP (loud): "+msg)
	t.Skip(msg)
	return ""
}

// startRTMPNode is a test node with RTMP on a free loopback port.
func startRTMPNode(t *testing.T, name string, edit func(*app.Config)) *app.Node {
	cfg := nodeConfig(t, name)
	cfg.RTMPAddr = "127.0.0.1:0"
	if edit != nil {
		edit(&cfg)
	}
	n := startNode(t, cfg)
	require.NotEmpty(t, n.RTMPAddr())
	return n
}

// ffmpegPush is a running ffmpeg pushing test video (and a sine tone as AAC) to url.
type ffmpegPush struct {
	cmd    *exec.Cmd
	stderr strings.Builder
	done   chan struct{} // closed when ffmpeg has exited; err is then its Wait error
	err    error
}

// x264 settings for the pushes: the profile, no B-frames for the high profile (WebRTC
// decoders expect none), a key frame a second so a new viewer gets a picture soon.
func pushFFmpeg(t *testing.T, bin, url, profile string, audio bool) *ffmpegPush {
	t.Helper()
	args := []string{"-hide_banner", "-loglevel", "error", "-re",
		"-f", "lavfi", "-i", "testsrc=size=320x240:rate=30"}
	if audio {
		args = append(args, "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100")
	}
	args = append(args, "-c:v", "libx264", "-profile:v", profile, "-preset", "veryfast", "-tune", "zerolatency",
		"-pix_fmt", "yuv420p", "-g", "30", "-bf", "0")
	if audio {
		args = append(args, "-c:a", "aac", "-b:a", "64k")
	}
	args = append(args, "-f", "flv", url)
	p := &ffmpegPush{cmd: exec.Command(bin, args...), done: make(chan struct{})}
	p.cmd.Stderr = &syncWriter{w: &p.stderr}
	require.NoError(t, p.cmd.Start())
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.done
	})
	return p
}

// syncWriter lets ffmpeg's stderr be read while it runs.
type syncWriter struct {
	mu sync.Mutex
	w  *strings.Builder
}

func (s *syncWriter) Write(b []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(b)
}

func (p *ffmpegPush) output() string {
	w := p.cmd.Stderr.(*syncWriter)
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.w.String()
}

// whepViewer is a pion WHEP viewer that counts video packets, H.264 key frames and audio.
type whepViewer struct {
	pc                   *webrtc.PeerConnection
	video, keys, audio   atomic.Int64
	videoMime, audioMime atomic.Value
	wg                   sync.WaitGroup
}

// playWHEP plays room; onVideo, if set, gets every video RTP payload with its arrival time.
func playWHEP(t *testing.T, node *app.Node, room string, onVideo func(payload []byte, at time.Time)) *whepViewer {
	t.Helper()
	pc, err := clientAPI(t).NewPeerConnection(webrtc.Configuration{})
	require.NoError(t, err)
	v := &whepViewer{pc: pc}
	t.Cleanup(func() {
		_ = pc.Close()
		v.wg.Wait()
	})
	for _, k := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeVideo, webrtc.RTPCodecTypeAudio} {
		_, err := pc.AddTransceiverFromKind(k, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly})
		require.NoError(t, err)
	}
	pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		v.wg.Add(1)
		defer v.wg.Done()
		video := tr.Kind() == webrtc.RTPCodecTypeVideo
		if video {
			v.videoMime.Store(tr.Codec().MimeType)
		} else {
			v.audioMime.Store(tr.Codec().MimeType)
		}
		for {
			pkt, _, err := tr.ReadRTP()
			if err != nil {
				return
			}
			if !video {
				v.audio.Add(1)
				continue
			}
			v.video.Add(1)
			if onVideo != nil {
				onVideo(pkt.Payload, time.Now())
			}
			if h264KeyStart(pkt.Payload) {
				v.keys.Add(1)
			}
		}
	})
	offer, err := pc.CreateOffer(nil)
	require.NoError(t, err)
	gathered := webrtc.GatheringCompletePromise(pc)
	require.NoError(t, pc.SetLocalDescription(offer))
	<-gathered
	// 409: a publisher's tracks are still starting (the node waits a moment for a video-only
	// publisher's audio); retry as WHEP clients do.
	var body []byte
	require.Eventually(t, func() bool {
		req, err := http.NewRequest(http.MethodPost, node.HTTPURL()+"/whep/"+room, strings.NewReader(pc.LocalDescription().SDP))
		require.NoError(t, err)
		req.Header.Set("Content-Type", "application/sdp")
		req.Header.Set("Authorization", "Bearer "+token(t, room, viewerIdentity, auth.Subscribe))
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		body, _ = io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode == http.StatusConflict {
			return false
		}
		require.Equal(t, http.StatusCreated, resp.StatusCode, string(body))
		return true
	}, 15*time.Second, 200*time.Millisecond, "WHEP still 409: %s", body)
	require.NoError(t, pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: string(body)}))
	return v
}

// h264KeyStart reports whether an H.264 RTP payload starts a key frame: an IDR slice alone,
// a STAP-A carrying an SPS (the packetizer sends SPS and PPS before every key frame), or the
// first FU-A fragment of an IDR slice.
func h264KeyStart(p []byte) bool {
	if len(p) < 2 {
		return false
	}
	switch p[0] & 0x1f {
	case 5:
		return true
	case 24:
		return len(p) > 3 && p[3]&0x1f == 7
	case 28:
		return p[1]&0x80 != 0 && p[1]&0x1f == 5
	}
	return false
}

// waitTracks waits until room has n tracks in the rooms bucket.
func waitTracks(t *testing.T, node *app.Node, room string, n int) projections.Room {
	t.Helper()
	var r projections.Room
	require.Eventually(t, func() bool {
		var err error
		r, err = projections.LoadRoom(context.Background(), node.Rooms(), room)
		return err == nil && len(r.Tracks) == n
	}, 20*time.Second, 50*time.Millisecond, "room %s never had %d tracks", room, n)
	return r
}

// payloads returns the room's events of type typ.
func payloads[T events.Payload](t *testing.T, node *app.Node, room string) []T {
	var out []T
	for _, e := range roomEvents(t, node.JetStream(), room) {
		p, err := e.Payload()
		require.NoError(t, err)
		if v, ok := p.(T); ok {
			out = append(out, v)
		}
	}
	return out
}

// TestRTMPPublish: ffmpeg pushes H.264 (baseline, and high profile without B-frames) and AAC
// over RTMP; the publisher is a peer with transport rtmp, a pion WHEP viewer gets H.264 RTP
// with key frames (and Opus audio when the node transcodes it); killing ffmpeg ends the
// session in the log.
func TestRTMPPublish(t *testing.T) {
	bin := requireFFmpeg(t)
	for _, tc := range []struct {
		profile, plid string
	}{
		{"baseline", "profile-level-id=42"},
		{"high", "profile-level-id=64"},
	} {
		t.Run(tc.profile, func(t *testing.T) {
			node := startRTMPNode(t, "rtmp-"+tc.profile, nil)
			room := newRoom("rtmp")
			url := "rtmp://" + node.RTMPAddr() + "/live/" + room + "?token=" + token(t, room, publisherIdentity, auth.Publish)
			push := pushFFmpeg(t, bin, url, tc.profile, true)
			r := waitTracks(t, node, room, 2)
			var video projections.Track
			for _, tr := range r.Tracks {
				if tr.Kind == "video" {
					video = tr
				}
			}
			require.Equal(t, "video/H264", video.Codec)

			v := playWHEP(t, node, room, nil)
			require.Eventually(t, func() bool { return v.keys.Load() > 0 && v.video.Load() > 100 },
				15*time.Second, 50*time.Millisecond, "video packets %d, key frames %d; ffmpeg: %s", v.video.Load(), v.keys.Load(), push.output())
			require.Eventually(t, func() bool { return v.audio.Load() > 50 }, 10*time.Second, 50*time.Millisecond,
				"opus packets %d", v.audio.Load())
			require.Equal(t, "audio/opus", v.audioMime.Load())

			var joined []events.PeerJoined
			for _, j := range payloads[events.PeerJoined](t, node, room) {
				if j.Role == "publisher" {
					joined = append(joined, j)
				}
			}
			require.Len(t, joined, 1)
			require.Equal(t, events.TransportRTMP, joined[0].Transport)
			require.Equal(t, "publisher", joined[0].Role)
			require.Equal(t, publisherIdentity, joined[0].Identity)
			var pubs []events.TrackPublished
			for _, p := range payloads[events.TrackPublished](t, node, room) {
				if p.Peer == joined[0].Peer {
					pubs = append(pubs, p)
				}
			}
			require.Len(t, pubs, 2)
			require.Equal(t, "video/H264", pubs[0].Codec)
			require.Contains(t, pubs[0].FmtpLine, "packetization-mode=1")
			require.Contains(t, pubs[0].FmtpLine, tc.plid)
			require.Equal(t, "audio/opus", pubs[1].Codec)

			metrics := get(t, node.HTTPURL()+"/metrics")
			require.Contains(t, metrics, `jetmedia_sessions{transport="rtmp"} 1`)
			require.Contains(t, metrics, `jetmedia_ingress_rtp_packets_total{transport="rtmp"}`)

			// A publisher that vanishes (SIGKILL: no FCUnpublish, no deleteStream) ends its
			// session as soon as its TCP connection does.
			require.NoError(t, push.cmd.Process.Signal(syscall.SIGKILL))
			requirePeerLeft(t, node, room, joined[0].Peer, "disconnected")
			require.Len(t, payloads[events.TrackUnpublished](t, node, room), 2)
			requireSchemaValid(t, node.JetStream())
		})
	}
}

// get returns the body of a GET that must answer 200.
func get(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode, string(body))
	return string(body)
}

// requirePeerLeft waits for peer's peer.left with reason.
func requirePeerLeft(t *testing.T, node *app.Node, room, peer, reason string) {
	t.Helper()
	require.Eventually(t, func() bool {
		for _, l := range payloads[events.PeerLeft](t, node, room) {
			if l.Peer == peer {
				require.Equal(t, reason, l.Reason)
				return true
			}
		}
		return false
	}, 15*time.Second, 50*time.Millisecond, "no peer.left for %s", peer)
}

// TestRTMPStopped: ffmpeg stopped with SIGINT ends its stream with FCUnpublish and
// deleteStream: the session ends with reason closed.
func TestRTMPStopped(t *testing.T) {
	bin := requireFFmpeg(t)
	node := startRTMPNode(t, "rtmp-stop", nil)
	room := newRoom("rtmp")
	url := "rtmp://" + node.RTMPAddr() + "/live/" + room + "/" + token(t, room, publisherIdentity, auth.Publish)
	push := pushFFmpeg(t, bin, url, "baseline", false)
	waitTracks(t, node, room, 1)
	joined := payloads[events.PeerJoined](t, node, room)
	require.Len(t, joined, 1)
	require.NoError(t, push.cmd.Process.Signal(os.Interrupt))
	requirePeerLeft(t, node, room, joined[0].Peer, "closed")
}

// TestRTMPRefused: bad, foreign-room, under-granted and missing tokens and bad paths are
// refused before anything is recorded: ffmpeg fails and the room has no event at all.
func TestRTMPRefused(t *testing.T) {
	bin := requireFFmpeg(t)
	node := startRTMPNode(t, "rtmp-refused", nil)
	room := newRoom("rtmp")
	forged := token(t, room, publisherIdentity, auth.Publish)
	forged = forged[:len(forged)-4] + "AAAA"
	for name, path := range map[string]string{
		"forged":     "/live/" + room + "?token=" + forged,
		"other room": "/live/" + room + "?token=" + token(t, "elsewhere", publisherIdentity, auth.Publish),
		"no publish": "/live/" + room + "/" + token(t, room, viewerIdentity, auth.Subscribe),
		"no token":   "/live/" + room,
		"wrong app":  "/other/" + room + "?token=" + token(t, room, publisherIdentity, auth.Publish),
		"bad room":   "/live/bad.room?token=" + token(t, room, publisherIdentity, auth.Publish),
	} {
		t.Run(name, func(t *testing.T) {
			push := pushFFmpeg(t, bin, "rtmp://"+node.RTMPAddr()+path, "baseline", false)
			select {
			case <-push.done:
				require.Error(t, push.err, "ffmpeg should fail")
			case <-time.After(20 * time.Second):
				t.Fatalf("ffmpeg still publishing with %s", name)
			}
		})
	}
	require.Empty(t, roomEvents(t, node.JetStream(), room), "no event for a refused publisher")
	require.Empty(t, roomEvents(t, node.JetStream(), "elsewhere"))
}

// TestRTMPBadInput: garbage instead of a handshake, and a client that floods bytes without
// ever authenticating, are cut off without an event and without hurting the node: a real
// publisher gets in afterwards. Needs no ffmpeg until that last step.
func TestRTMPBadInput(t *testing.T) {
	node := startRTMPNode(t, "rtmp-bad", func(c *app.Config) { c.RTMPAudio.Disabled = true })
	for name, data := range map[string][]byte{
		"garbage": []byte(strings.Repeat("GET / HTTP/1.1\r\n", 200)),
		// A valid C0 and C1, then a flood that is no RTMP chunk stream: the pre-auth budget
		// (64 KiB) or the protocol ends it, never a buffer of the flood's size.
		"flood": append(append([]byte{3}, make([]byte, 1536)...), make([]byte, 1<<20)...),
	} {
		t.Run(name, func(t *testing.T) {
			c, err := net.Dial("tcp", node.RTMPAddr())
			require.NoError(t, err)
			defer c.Close()
			go func() { _, _ = c.Write(data) }()
			require.NoError(t, c.SetReadDeadline(time.Now().Add(15*time.Second)))
			_, err = io.Copy(io.Discard, c)
			// Closed by the server: EOF, or a reset when it closed with the flood unread.
			if err != nil {
				require.ErrorIs(t, err, syscall.ECONNRESET, "the server must close the connection, not leave it to time out")
			}
		})
	}
	bin := requireFFmpeg(t)
	room := newRoom("rtmp")
	pushFFmpeg(t, bin, "rtmp://"+node.RTMPAddr()+"/live/"+room+"?token="+token(t, room, publisherIdentity, auth.Publish), "baseline", true)
	r := waitTracks(t, node, room, 1)
	for _, tr := range r.Tracks {
		require.Equal(t, "video/H264", tr.Codec, "audio off: video only")
	}
}

// TestRTMPShutdown: a node that stops ends its RTMP sessions with reason shutdown and closes
// the publisher's connection.
func TestRTMPShutdown(t *testing.T) {
	bin := requireFFmpeg(t)
	cfg := nodeConfig(t, "rtmp-shutdown")
	cfg.RTMPAddr = "127.0.0.1:0"
	node := startNode(t, cfg)
	room := newRoom("rtmp")
	push := pushFFmpeg(t, bin, "rtmp://"+node.RTMPAddr()+"/live/"+room+"?token="+token(t, room, publisherIdentity, auth.Publish), "baseline", true)
	waitTracks(t, node, room, 2)
	require.NoError(t, node.Close())
	select {
	case <-push.done:
	case <-time.After(15 * time.Second):
		t.Fatal("ffmpeg still connected after the node closed")
	}
	// The same data, read by the node started again: the leave is recorded with its reason.
	cfg.RTMPAddr = ""
	again := startNode(t, cfg)
	left := payloads[events.PeerLeft](t, again, room)
	require.Len(t, left, 1)
	require.Equal(t, "shutdown", left[0].Reason)
	require.Len(t, payloads[events.TrackUnpublished](t, again, room), 2)
}

// TestRTMPBrowserWHEP: Chromium plays an ffmpeg RTMP stream (H.264 baseline and high, AAC)
// through the demo page over WHEP, decodes its frames and plays its audio (the transcoded
// Opus) with energy: totalAudioEnergy, which Chromium counts only for audio it plays out.
func TestRTMPBrowserWHEP(t *testing.T) {
	chromium := browser.RequireChromium(t)
	bin := requireFFmpeg(t)
	for _, profile := range []string{"baseline", "high"} {
		t.Run(profile, func(t *testing.T) {
			node, room, push := startRTMPBrowserStream(t, bin, "rtmp-browser-"+profile, profile)
			b := browser.Start(t, chromium)
			viewer := b.Open(t, node.HTTPURL()+"/?room="+room+"&auto=play")
			var stats browser.PageStats
			deadline := time.Now().Add(30 * time.Second)
			for stats.FramesDecoded <= 30 || stats.AudioEnergy <= 0 {
				if time.Now().After(deadline) {
					t.Fatalf("in 30 s Chromium decoded %d frames (want > 30) and heard audio energy %v (want > 0); status %q; console:\n%s\nffmpeg: %s",
						stats.FramesDecoded, stats.AudioEnergy, viewer.Text("status"), tabConsole(viewer), push.output())
				}
				time.Sleep(250 * time.Millisecond)
				stats, _ = viewer.Stats()
			}
			t.Logf("Chromium WHEP viewer of an RTMP %s stream: %+v", profile, stats)
		})
	}
}

// startRTMPBrowserStream starts a dev-mode node with RTMP and has ffmpeg push H.264 of the
// profile and AAC into a new room with a dev token, until both tracks are published.
func startRTMPBrowserStream(t *testing.T, bin, name, profile string) (*app.Node, string, *ffmpegPush) {
	t.Helper()
	node := startDevNode(t, name, func(c *app.Config) { c.RTMPAddr = "127.0.0.1:0" })
	room := newRoom("rtmp")
	push := pushFFmpeg(t, bin, "rtmp://"+node.RTMPAddr()+"/live/"+room+"?token="+devPublishToken(t, node, room), profile, true)
	waitTracks(t, node, room, 2)
	return node, room, push
}

// devPublishToken mints a publish token for room at a dev-mode node's /dev/token.
func devPublishToken(t *testing.T, node *app.Node, room string) string {
	t.Helper()
	resp, err := http.Get(node.HTTPURL() + "/dev/token?grants=publish&format=text&room=" + room)
	require.NoError(t, err)
	tok, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode, string(tok))
	return strings.TrimSpace(string(tok))
}

// TestRTMPBrowserRoom: a Chromium viewer on the room page (the browser SDK) sees the RTMP
// publisher as a peer, decodes its video and plays its audio with energy in the peer's tile.
func TestRTMPBrowserRoom(t *testing.T) {
	chromium := browser.RequireChromium(t)
	bin := requireFFmpeg(t)
	node, room, push := startRTMPBrowserStream(t, bin, "rtmp-browser-room", "high")
	joined := payloads[events.PeerJoined](t, node, room)
	require.Len(t, joined, 1)
	rtmpPeer := joined[0].Peer
	b := browser.Start(t, chromium)
	// The page publishes its (fake) camera too: the smallest picture keeps the CPU for decoding.
	tab := b.Open(t, node.HTTPURL()+"/room.html?"+url.Values{"room": {room}, "name": {"viewer"}, "auto": {"join"}, "video": {"160x120"}}.Encode())
	type peerStats struct {
		FramesDecoded int     `json:"framesDecoded"`
		AudioTracks   int     `json:"audioTracks"`
		AudioEnergy   float64 `json:"audioEnergy"`
	}
	var got struct {
		State string               `json:"state"`
		Peers map[string]peerStats `json:"peers"`
	}
	deadline := time.Now().Add(30 * time.Second)
	for p := got.Peers[rtmpPeer]; p.FramesDecoded <= 30 || p.AudioEnergy <= 0; p = got.Peers[rtmpPeer] {
		if time.Now().After(deadline) {
			t.Fatalf("in 30 s the room page decoded %d frames of the RTMP peer (want > 30) and heard audio energy %v (want > 0); stats %+v; console:\n%s\nffmpeg: %s",
				p.FramesDecoded, p.AudioEnergy, got, tabConsole(tab), push.output())
		}
		time.Sleep(250 * time.Millisecond)
		got.Peers = nil
		if s, err := browser.Eval[string](tab, 10*time.Second, `window.jetmedia.stats().then(JSON.stringify)`); err == nil {
			_ = json.Unmarshal([]byte(s), &got)
		}
	}
	t.Logf("Chromium room-page viewer of an RTMP stream: %+v", got.Peers[rtmpPeer])
}

// TestRTMPLatency measures what the node adds between an RTMP publisher and a WebRTC viewer
// on loopback: a Go RTMP client (gortmplib) writes 30 small frames a second, each carrying its
// number, and the pion WHEP viewer notes when each arrives. Encoding and decoding are not in
// it (see docs/rtmp.md for what glass-to-glass adds). Needs no ffmpeg: audio off.
func TestRTMPLatency(t *testing.T) {
	node := startRTMPNode(t, "rtmp-latency", func(c *app.Config) { c.RTMPAudio.Disabled = true })
	room := newRoom("rtmp")
	u, err := url.Parse("rtmp://" + node.RTMPAddr() + "/live/" + room + "?token=" + token(t, room, publisherIdentity, auth.Publish))
	require.NoError(t, err)
	c := &gortmplib.Client{URL: u, Publish: true}
	require.NoError(t, c.Initialize(ctxT(t, 10*time.Second)))
	defer c.Close()
	// A real x264 baseline SPS and PPS (320x240): the node reads the profile from it.
	sps, _ := hex.DecodeString("6742c00dd90141fb0110000003001000000303c0f142a480")
	pps, _ := hex.DecodeString("68cb83cb20")
	track := &gortmplib.Track{Codec: &codecs.H264{SPS: sps, PPS: pps}}
	w := &gortmplib.Writer{Conn: c, Tracks: []*gortmplib.Track{track}}
	require.NoError(t, w.Initialize())

	var mu sync.Mutex
	sent := map[uint64]time.Time{}
	var lat []time.Duration
	var firstAt time.Time
	frame := func(n uint64) [][]byte {
		typ := byte(0x41) // non-IDR slice
		if n%30 == 0 {
			typ = 0x65 // IDR: a key frame a second
		}
		// The number in decimal digits and 0xff padding: no 00 00 01 inside, as emulation
		// prevention guarantees for real slices (a binary number would contain start codes).
		nalu := fmt.Appendf([]byte{typ}, "%08d", n)
		return [][]byte{append(nalu, bytes.Repeat([]byte{0xff}, 191)...)}
	}
	start := time.Now()
	stop := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		tick := time.NewTicker(time.Second / 30)
		defer tick.Stop()
		for n := uint64(0); ; n++ {
			select {
			case <-stop:
				done <- nil
				return
			case <-tick.C:
			}
			pts := time.Since(start)
			mu.Lock()
			sent[n] = time.Now()
			mu.Unlock()
			if err := w.WriteH264(track, pts, pts, frame(n)); err != nil {
				done <- err
				return
			}
		}
	}()
	waitTracks(t, node, room, 1)
	playWHEP(t, node, room, func(p []byte, at time.Time) {
		if len(p) < 9 || (p[0]&0x1f != 1 && p[0]&0x1f != 5) {
			return
		}
		n, err := strconv.ParseUint(string(p[1:9]), 10, 64)
		if err != nil {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if firstAt.IsZero() {
			firstAt = at
		}
		// Frames sent before the viewer was bound reach it from the node's caches (the key
		// frame a new viewer starts with): not what a frame in flight takes.
		if s, ok := sent[n]; ok && s.After(firstAt) {
			lat = append(lat, at.Sub(s))
		}
	})
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(lat) >= 150
	}, 20*time.Second, 50*time.Millisecond, "frames received")
	close(stop)
	require.NoError(t, <-done)
	mu.Lock()
	got := slices.Clone(lat)
	mu.Unlock()
	slices.Sort(got)
	t.Logf("RTMP in -> WebRTC viewer, %d frames on loopback: median %v, p95 %v, max %v",
		len(got), got[len(got)/2], got[len(got)*95/100], got[len(got)-1])
	require.Less(t, got[len(got)/2], 100*time.Millisecond, "the node should add no buffering")
}

// The glass-to-glass source steps through flipShades grey levels, flipFrames frames each: a
// flip every 0.5 s at 30 fps, the same shade again after 2 s, so a flip seen up to 2 s late is
// still matched to the one that caused it.
const (
	flipFrames = 15
	flipShades = 4
)

// TestRTMPGlassToGlass measures ffmpeg → node → Chromium latency on one machine (one clock):
// the test feeds ffmpeg raw frames on stdin at 30 fps, the whole picture one grey level
// (black, dark, light, white in turn), flipping every half second and noting the wall-clock time it writes each flip; ffmpeg
// encodes them (x264 zerolatency) and pushes RTMP; the demo page plays the room over WHEP
// and samples every presented frame (requestVideoFrameCallback, drawn to a small canvas),
// noting the wall-clock time it first sees each flip. Logged, not asserted (docs/rtmp.md).
func TestRTMPGlassToGlass(t *testing.T) {
	chromium := browser.RequireChromium(t)
	bin := requireFFmpeg(t)
	node := startDevNode(t, "rtmp-g2g", func(c *app.Config) { c.RTMPAddr = "127.0.0.1:0" })
	room := newRoom("rtmp")
	tok := devPublishToken(t, node, room)
	const w, h = 320, 240
	cmd := exec.Command(bin, "-hide_banner", "-loglevel", "error",
		"-f", "rawvideo", "-pix_fmt", "gray", "-video_size", fmt.Sprintf("%dx%d", w, h), "-framerate", "30", "-i", "pipe:0",
		"-c:v", "libx264", "-profile:v", "baseline", "-preset", "ultrafast", "-tune", "zerolatency",
		"-pix_fmt", "yuv420p", "-g", "30", "-bf", "0",
		"-f", "flv", "rtmp://"+node.RTMPAddr()+"/live/"+room+"?token="+tok)
	stderr := &syncWriter{w: &strings.Builder{}}
	cmd.Stderr = stderr
	stdin, err := cmd.StdinPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()

	// The source: one goroutine writes the frames and notes each flip's time (unix ms).
	type flip struct {
		Shade int     `json:"shade"`
		At    float64 `json:"at"` // unix ms
	}
	var mu sync.Mutex
	var sent []flip
	stop := make(chan struct{})
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		var frames [flipShades][]byte
		for i := range frames {
			frames[i] = bytes.Repeat([]byte{byte(i * 255 / (flipShades - 1))}, w*h)
		}
		tick := time.NewTicker(time.Second / 30)
		defer tick.Stop()
		for n := 0; ; n++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			shade := (n / flipFrames) % flipShades
			if n%flipFrames == 0 {
				mu.Lock()
				sent = append(sent, flip{Shade: shade, At: float64(time.Now().UnixMicro()) / 1000})
				mu.Unlock()
			}
			if _, err := stdin.Write(frames[shade]); err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() {
		close(stop)
		// ffmpeg first: a writer blocked on a full pipe returns once Wait has closed it.
		_ = cmd.Process.Kill()
		<-exited
		<-writerDone
	})
	waitTracks(t, node, room, 1)

	b := browser.Start(t, chromium)
	tab := b.Open(t, node.HTTPURL()+"/?room="+room+"&auto=play")
	// Every presented frame: its mean brightness from an 8x8 downscale, read as the nearest of
	// the shades; a new shade counts once a second frame confirms it (an encoder's frame
	// between two shades is not a flip), timed with Date.now() at the first one's callback
	// (when the frame is handed to the compositor).
	_, err = browser.Eval[bool](tab, 10*time.Second, fmt.Sprintf(`(() => {
		const shades = %d;
		const v = document.getElementById("remote");
		const ctx = new OffscreenCanvas(8, 8).getContext("2d", { willReadFrequently: true });
		window.g2g = { seen: [], frames: 0 };
		let shown = null, cand = null, candAt = 0;
		const cb = () => {
			const at = Date.now();
			ctx.drawImage(v, 0, 0, 8, 8);
			const d = ctx.getImageData(0, 0, 8, 8).data;
			let sum = 0;
			for (let i = 0; i < d.length; i += 4) sum += d[i + 1];
			const shade = Math.min(shades - 1, Math.max(0, Math.round(sum / (d.length / 4) * (shades - 1) / 255)));
			window.g2g.frames++;
			if (shade === shown) {
				cand = null;
			} else if (shade === cand) {
				// The first frames may come from the node's cached key frame, older than the
				// flips in flight: a change among them is not a flip's latency.
				if (shown !== null && window.g2g.frames > 15) window.g2g.seen.push({ shade, at: candAt });
				shown = shade;
				cand = null;
			} else {
				cand = shade;
				candAt = at;
			}
			v.requestVideoFrameCallback(cb);
		};
		v.requestVideoFrameCallback(cb);
		return true })()`, flipShades))
	require.NoError(t, err, "console:\n%s", tabConsole(tab))

	var seen struct {
		Seen   []flip `json:"seen"`
		Frames int    `json:"frames"`
	}
	const want = 40
	// 20 s of flips on a quiet machine; a loaded one presents fewer frames.
	deadline := time.Now().Add(120 * time.Second)
	for len(seen.Seen) < want {
		if time.Now().After(deadline) {
			t.Fatalf("the page saw %d flips in %d frames in 120 s, want %d; status %q; console:\n%s\nffmpeg: %s",
				len(seen.Seen), seen.Frames, want, tab.Text("status"), tabConsole(tab), stderr.String())
		}
		time.Sleep(500 * time.Millisecond)
		if s, err := browser.Eval[string](tab, 10*time.Second, `JSON.stringify(window.g2g)`); err == nil {
			_ = json.Unmarshal([]byte(s), &seen)
		}
	}
	// Each flip seen is matched to the latest flip to the same shade written before it.
	mu.Lock()
	src := slices.Clone(sent)
	mu.Unlock()
	var lat []time.Duration
	for _, s := range seen.Seen {
		for i := len(src) - 1; i >= 0; i-- {
			if src[i].Shade == s.Shade && src[i].At <= s.At {
				lat = append(lat, time.Duration((s.At-src[i].At)*float64(time.Millisecond)))
				break
			}
		}
	}
	require.NotEmpty(t, lat, "no seen flip matched a written one")
	slices.Sort(lat)
	t.Logf("glass-to-glass ffmpeg (x264 ultrafast zerolatency, 320x240 30 fps) -> RTMP -> node -> WHEP -> Chromium, %d flips seen of %d written: p50 %v, p95 %v, min %v, max %v (%d frames presented)",
		len(lat), len(src), lat[len(lat)/2].Round(time.Millisecond), lat[len(lat)*95/100].Round(time.Millisecond),
		lat[0].Round(time.Millisecond), lat[len(lat)-1].Round(time.Millisecond), seen.Frames)
}

func (s *syncWriter) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.String()
}
