package loadgen

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/jetmedia/jetmedia/ingress/signal/client"
)

// newAPI returns the pion API the clients of one role share. Publishers get pion's default
// interceptors (NACK, RTCP reports, TWCC, stats). Viewers get what a viewer must do for the
// server (NACK generation and receiver reports) and not the statistics and congestion
// feedback bookkeeping: a hundred viewers share the server's two cores in a benchmark, and
// what they spend per packet delays the packets they measure. Against a server on loopback
// it gathers loopback candidates only, so the run never sends traffic off the machine. extra
// interceptors run after those.
func newAPI(loopback, viewer bool, extra ...interceptor.Factory) (*webrtc.API, error) {
	me := &webrtc.MediaEngine{}
	if err := me.RegisterDefaultCodecs(); err != nil {
		return nil, err
	}
	ir := &interceptor.Registry{}
	if viewer {
		if err := webrtc.ConfigureNack(me, ir); err != nil {
			return nil, err
		}
		if err := webrtc.ConfigureRTCPReports(ir); err != nil {
			return nil, err
		}
	} else if err := webrtc.RegisterDefaultInterceptors(me, ir); err != nil {
		return nil, err
	}
	for _, f := range extra {
		ir.Add(f)
	}
	var se webrtc.SettingEngine
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	if loopback {
		se.SetIncludeLoopbackCandidate(true)
		se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	}
	if viewer {
		// The tool counts duplicates itself; SRTP's replay window is per-packet work a
		// measuring client does not need.
		se.DisableSRTPReplayProtection(true)
		se.DisableSRTCPReplayProtection(true)
	}
	return webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithInterceptorRegistry(ir), webrtc.WithSettingEngine(se)), nil
}

// isLoopback reports whether the server URL names this machine by a loopback address.
func isLoopback(u *url.URL) bool {
	h := u.Hostname()
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// httpStatusError is a non-2xx reply of the server.
type httpStatusError struct {
	Status int
	Body   string
}

func (e *httpStatusError) Error() string {
	return fmt.Sprintf("HTTP %d: %s", e.Status, strings.TrimSpace(e.Body))
}

// exchange posts pc's offer (after ICE gathering: no trickle) to endpoint, applies the answer
// and returns the session URL.
func exchange(ctx context.Context, hc *http.Client, pc *webrtc.PeerConnection, endpoint, token string) (string, error) {
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		return "", err
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(offer); err != nil {
		return "", err
	}
	select {
	case <-gathered:
	case <-ctx.Done():
		return "", ctx.Err()
	}
	answer, location, err := postSDP(ctx, hc, endpoint, token, pc.LocalDescription().SDP)
	if err != nil {
		return "", err
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
		return "", err
	}
	return location, nil
}

// postSDP posts an offer to a WHIP or WHEP endpoint and returns the answer and the session
// URL; a reply other than 201 is an *httpStatusError.
func postSDP(ctx context.Context, hc *http.Client, endpoint, token, offer string) (answer, location string, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader(offer))
	if err != nil {
		return "", "", err
	}
	req.Header.Set("Content-Type", "application/sdp")
	setToken(req, token)
	resp, err := hc.Do(req)
	if err != nil {
		return "", "", err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusCreated {
		return "", "", &httpStatusError{Status: resp.StatusCode, Body: string(body)}
	}
	base, err := url.Parse(endpoint)
	if err != nil {
		return "", "", err
	}
	loc := resp.Header.Get("Location")
	rel, err := url.Parse(loc)
	if err != nil || loc == "" {
		return "", "", fmt.Errorf("load: no usable Location header: %q", loc)
	}
	return string(body), base.ResolveReference(rel).String(), nil
}

// deleteSession ends a WHIP/WHEP session; errors are not interesting at the end of a run.
func deleteSession(hc *http.Client, location, token string) {
	if location == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodDelete, location, nil)
	if err != nil {
		return
	}
	setToken(req, token)
	if resp, err := hc.Do(req); err == nil {
		resp.Body.Close()
	}
}

func setToken(req *http.Request, token string) {
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
}

// counters of packets and bytes, updated with atomics by one sender or reader.
type counters struct {
	packets, bytes atomic.Uint64
}

func (c *counters) add(n int) {
	c.packets.Add(1)
	c.bytes.Add(uint64(n))
}

// publisher sends one synthetic video track (VP8 framing, at a bitrate and frame rate) and
// one audio track (Opus, 50 packets/s), through WHIP (pc and location) or as a peer of a room
// (sdk, peer and senders; see rooms.go).
type publisher struct {
	room     string
	token    string
	pc       *webrtc.PeerConnection
	location string

	sdk     *client.Room
	peer    string
	senders []*webrtc.RTPSender

	video, audio         *webrtc.TrackLocalStaticRTP
	videoSent, audioSent counters
	// videoSeq and audioSeq are the next probe sequence numbers: a subscriber's loss is
	// measured up to the last one sent.
	videoSeq, audioSeq atomic.Uint32
	plis               atomic.Uint64
	keyframe           chan struct{}

	wg sync.WaitGroup
}

// newPublisher makes a publisher's tracks, not yet sent anywhere.
func newPublisher(room, token string, audio bool) (*publisher, error) {
	p := &publisher{room: room, token: token, keyframe: make(chan struct{}, 1)}
	var err error
	p.video, err = webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, "video", "load")
	if err != nil {
		return nil, err
	}
	if audio {
		p.audio, err = webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, "audio", "load")
		if err != nil {
			return nil, err
		}
	}
	return p, nil
}

// tracks are the publisher's tracks, video first.
func (p *publisher) tracks() []webrtc.TrackLocal {
	if p.audio == nil {
		return []webrtc.TrackLocal{p.video}
	}
	return []webrtc.TrackLocal{p.video, p.audio}
}

func startPublisher(ctx context.Context, api *webrtc.API, hc *http.Client, baseURL, room, token string, audio bool) (*publisher, error) {
	p, err := newPublisher(room, token, audio)
	if err != nil {
		return nil, err
	}
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return nil, err
	}
	p.pc = pc
	for i, t := range p.tracks() {
		tr, err := pc.AddTransceiverFromTrack(t, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
		if err != nil {
			_ = pc.Close()
			return nil, err
		}
		// RTCP must be read for the interceptors to run; the video sender's carries PLIs.
		video := i == 0
		p.wg.Go(func() { p.readRTCP(tr.Sender(), video) })
	}
	if p.location, err = exchange(ctx, hc, pc, strings.TrimRight(baseURL, "/")+"/whip/"+room, token); err != nil {
		_ = pc.Close()
		p.wg.Wait()
		return nil, err
	}
	return p, nil
}

func (p *publisher) readRTCP(s *webrtc.RTPSender, video bool) {
	for {
		pkts, _, err := s.ReadRTCP()
		if err != nil {
			return
		}
		if !video {
			continue
		}
		p.watchRTCP(pkts)
	}
}

// watchRTCP takes the keyframe requests (PLI, FIR) among pkts: the next frame is a keyframe.
func (p *publisher) watchRTCP(pkts []rtcp.Packet) {
	for _, pk := range pkts {
		switch pk.(type) {
		case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest:
			p.plis.Add(1)
			select {
			case p.keyframe <- struct{}{}:
			default:
			}
		}
	}
}

// send paces the media until ctx ends: each video frame as a burst of packets at its due
// time (a keyframe every 2 s or after a PLI), audio every 20 ms.
func (p *publisher) send(ctx context.Context, bitrate, fps, maxPayload int) {
	if p.audio != nil {
		p.wg.Go(func() { p.sendAudio(ctx) })
	}
	sizes := framePackets(frameBytes(bitrate, fps), maxPayload)
	payload := make([]byte, maxPayload+probeSize)
	pkt := &rtp.Packet{Header: rtp.Header{Version: 2}}
	start := time.Now()
	var ts uint32
	var seq uint16
	keyEvery := int64(2 * fps)
	sinceKey := int64(0)
	for k := int64(0); ; k++ {
		if !sleepUntil(ctx, due(start, k, fps)) {
			return
		}
		select {
		case <-p.keyframe:
			sinceKey = 0
		default:
		}
		key := sinceKey%keyEvery == 0
		sinceKey++
		ts += uint32(90000 / fps)
		for i, size := range sizes {
			b := payload[:size]
			clear(b[:probeOffset])
			if i == 0 {
				b[0] = 0x10 // VP8 descriptor: start of partition 0
				if !key {
					b[1] = 0x01 // VP8 frame header: inter frame
				}
			}
			seq++
			pkt.SequenceNumber, pkt.Timestamp, pkt.Marker, pkt.Payload = seq, ts, i == len(sizes)-1, b
			putProbe(b, time.Now().UnixNano(), p.videoSeq.Load())
			if err := p.video.WriteRTP(pkt); err != nil {
				continue
			}
			p.videoSeq.Add(1)
			p.videoSent.add(12 + size)
		}
	}
}

func (p *publisher) sendAudio(ctx context.Context) {
	const size = 80 // ~32 kbit/s Opus
	payload := make([]byte, size)
	pkt := &rtp.Packet{Header: rtp.Header{Version: 2}, Payload: payload}
	start := time.Now()
	var ts uint32
	var seq uint16
	for k := int64(0); ; k++ {
		if !sleepUntil(ctx, due(start, k, 50)) {
			return
		}
		seq++
		ts += 960
		pkt.SequenceNumber, pkt.Timestamp = seq, ts
		putProbe(payload, time.Now().UnixNano(), p.audioSeq.Load())
		if err := p.audio.WriteRTP(pkt); err != nil {
			continue
		}
		p.audioSeq.Add(1)
		p.audioSent.add(12 + size)
	}
}

// close ends the WHIP session (DELETE) or leaves the room, and closes the PeerConnection
// (send loops end with their ctx).
func (p *publisher) close(hc *http.Client) {
	if p.sdk != nil {
		_ = p.sdk.Leave()
	} else {
		deleteSession(hc, p.location, p.token)
		_ = p.pc.Close()
	}
	p.wg.Wait()
}

// sleepUntil waits for t; false when ctx ended first.
func sleepUntil(ctx context.Context, t time.Time) bool {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err() == nil
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-timer.C:
		return true
	}
}

// trackRecv is what a subscriber saw of one track. The reader goroutine owns seq; the
// counters are atomics for the progress line.
type trackRecv struct {
	got counters
	seq seqTracker
}

// reception is what one subscriber received of one publisher's tracks.
type reception struct {
	pub        *publisher
	firstVideo atomic.Int64 // unix nanos of the first video packet
	video      trackRecv
	audio      trackRecv
	mu         sync.Mutex // guards seq trackers against the final read
}

// read runs on pion's OnTrack goroutine until the connection closes.
func (rc *reception) read(tr *webrtc.TrackRemote, lat *latencies) {
	rec := &rc.audio
	video := tr.Kind() == webrtc.RTPCodecTypeVideo
	if video {
		rec = &rc.video
	}
	buf := make([]byte, 1500)
	for {
		n, _, err := tr.Read(buf)
		if err != nil {
			return
		}
		now := time.Now() // pion's buffers hide the arrival: read time for both
		rc.record(buf[:n], rec, video, now, now, lat)
	}
}

// record accounts one received RTP packet (pkt, decrypted, header included) of rec, which
// arrived at the subscriber's socket at arrived and was read at read. Latencies are recorded
// into the run's histograms while the run is measuring. It does not allocate.
func (rc *reception) record(pkt []byte, rec *trackRecv, video bool, arrived, read time.Time, lat *latencies) {
	payload, err := rtpPayload(pkt)
	if err != nil {
		return
	}
	sent, seq, ok := readProbe(payload)
	if !ok {
		return
	}
	if video {
		rc.firstVideo.CompareAndSwap(0, arrived.UnixNano())
	}
	rec.got.add(len(pkt))
	rc.mu.Lock()
	rec.seq.add(seq)
	rc.mu.Unlock()
	if lat.measuring.Load() {
		at := time.Unix(0, sent)
		lat.arrival.Record(arrived.Sub(at))
		lat.read.Record(read.Sub(at))
	}
}

// subscriber plays one publisher's tracks through WHEP and measures what arrives.
type subscriber struct {
	token    string
	pc       *webrtc.PeerConnection
	location string

	posted time.Time // when the offer was posted
	rec    reception
	lat    *latencies // shared by the run
	wg     sync.WaitGroup
}

// errNotPublished is a 409: the room publishes nothing yet.
var errNotPublished = errors.New("load: room publishes nothing yet")

func startSubscriber(ctx context.Context, api *webrtc.API, hc *http.Client, baseURL string, pub *publisher, token string,
	audio bool, lat *latencies) (*subscriber, error) {
	for {
		s, err := playOnce(ctx, api, hc, baseURL, pub, token, audio, lat)
		var he *httpStatusError
		if err == nil || !errors.As(err, &he) || he.Status != http.StatusConflict {
			return s, err
		}
		if !sleepUntil(ctx, time.Now().Add(100*time.Millisecond)) {
			return nil, fmt.Errorf("%w: %v", errNotPublished, err)
		}
	}
}

func playOnce(ctx context.Context, api *webrtc.API, hc *http.Client, baseURL string, pub *publisher, token string,
	audio bool, lat *latencies) (*subscriber, error) {
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return nil, err
	}
	s := &subscriber{token: token, pc: pc, lat: lat, posted: time.Now()}
	s.rec.pub = pub
	kinds := []webrtc.RTPCodecType{webrtc.RTPCodecTypeVideo}
	if audio {
		kinds = append(kinds, webrtc.RTPCodecTypeAudio)
	}
	for _, k := range kinds {
		if _, err := pc.AddTransceiverFromKind(k, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
			_ = pc.Close()
			return nil, err
		}
	}
	pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		s.wg.Add(1)
		defer s.wg.Done()
		s.rec.read(tr, s.lat)
	})
	if s.location, err = exchange(ctx, hc, pc, strings.TrimRight(baseURL, "/")+"/whep/"+pub.room, token); err != nil {
		_ = pc.Close()
		return nil, err
	}
	return s, nil
}

func (s *subscriber) receptions() []*reception { return []*reception{&s.rec} }

func (s *subscriber) joinStarted() time.Time { return s.posted }

// close DELETEs the session, closes the PeerConnection and waits for its readers.
func (s *subscriber) close(hc *http.Client) {
	deleteSession(hc, s.location, s.token)
	_ = s.pc.Close()
	s.wg.Wait()
}
