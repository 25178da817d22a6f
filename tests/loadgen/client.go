package loadgen

import (
	"context"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"

	"github.com/jetmedia/jetmedia/ingress/signal/client"
	"github.com/jetmedia/jetmedia/tests/rtcclient"
)

// newAPI is the pion API of the run's clients of one role (rtcclient.NewAPI): viewers get
// rtcclient.LightReceiver (a hundred of them share the server's cores in a benchmark), and a
// server not on loopback gets candidates of every interface. extra interceptors run after
// the others; twcc gives viewers transport-wide feedback (rtcclient.TWCCFeedback).
func newAPI(loopback, viewer, twcc bool, extra ...interceptor.Factory) (*webrtc.API, error) {
	opts := []rtcclient.APIOption{rtcclient.WithInterceptors(extra...)}
	if !loopback {
		opts = append(opts, rtcclient.AnyInterface())
	}
	if viewer {
		opts = append(opts, rtcclient.LightReceiver())
	}
	if viewer && twcc {
		opts = append(opts, rtcclient.TWCCFeedback())
	}
	return rtcclient.NewAPI(opts...)
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
	room  string
	token string
	whip  *rtcclient.Session

	sdk     *client.Room
	peer    string
	senders []*webrtc.RTPSender

	video, audio         *webrtc.TrackLocalStaticRTP
	videoSent, audioSent counters
	// layers are the video's simulcast layers, lowest first; one (video itself) without
	// simulcast.
	layers []*videoLayer
	ids    rtpIDs // set before sending when layers has more than one
	// videoSeq and audioSeq are the next probe sequence numbers: a subscriber's loss is
	// measured up to the last one sent.
	videoSeq, audioSeq atomic.Uint32
	plis               atomic.Uint64

	wg sync.WaitGroup
}

// videoLayer is one simulcast layer of a publisher's video (or its only one).
type videoLayer struct {
	track *webrtc.TrackLocalStaticRTP
	// share is the layer's bit rate in thousandths of the configured one.
	share    int
	keyframe chan struct{} // a PLI or FIR asked for a key frame
	ssrc     atomic.Uint32 // known once negotiated (0: not known)
	seq      uint16        // the send loop's
}

// rtpIDs are what a simulcast layer's packets carry so the server knows their layer before
// any RTCP: the negotiated header extension ids of the MID and the RID (0: none), and the MID.
type rtpIDs struct {
	midID, ridID uint8
	mid          string
}

// simulcastLayers are the RIDs and bit-rate shares of a simulcast publisher's layers, lowest
// first, about what a browser sends at scaleResolutionDownBy 4, 2, 1.
var simulcastLayers = []struct {
	rid   string
	share int
}{{"q", 100}, {"h", 300}, {"f", 1000}}

// newPublisher makes a publisher's tracks, not yet sent anywhere; simulcast sends the video
// in three layers.
func newPublisher(room, token string, audio, simulcast bool) (*publisher, error) {
	p := &publisher{room: room, token: token}
	vp8 := webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}
	if simulcast {
		for _, l := range simulcastLayers {
			tr, err := webrtc.NewTrackLocalStaticRTP(vp8, "video", "load", webrtc.WithRTPStreamID(l.rid))
			if err != nil {
				return nil, err
			}
			p.layers = append(p.layers, &videoLayer{track: tr, share: l.share, keyframe: make(chan struct{}, 1)})
		}
	} else {
		tr, err := webrtc.NewTrackLocalStaticRTP(vp8, "video", "load")
		if err != nil {
			return nil, err
		}
		p.layers = []*videoLayer{{track: tr, share: 1000, keyframe: make(chan struct{}, 1)}}
	}
	p.video = p.layers[0].track
	var err error
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

// startPublisher publishes a new publisher's tracks through WHIP; the caller starts sending.
func startPublisher(ctx context.Context, api *webrtc.API, hc *http.Client, baseURL, room, token string, audio, simulcast bool) (*publisher, error) {
	p, err := newPublisher(room, token, audio, simulcast)
	if err != nil {
		return nil, err
	}
	// The video sender's RTCP carries the keyframe requests.
	onRTCP := func(track int, pkts []rtcp.Packet) {
		if track == 0 {
			p.watchRTCP(pkts)
		}
	}
	opts := []rtcclient.Option{rtcclient.WithToken(token), rtcclient.WithHTTPClient(hc)}
	if simulcast {
		more := make([]webrtc.TrackLocal, 0, len(p.layers)-1)
		for _, l := range p.layers[1:] {
			more = append(more, l.track)
		}
		opts = append(opts, rtcclient.WithSimulcast(0, more...))
	}
	p.whip, err = rtcclient.StartWHIP(ctx, api, strings.TrimRight(baseURL, "/")+"/whip/"+room, p.tracks(), onRTCP, opts...)
	if err != nil {
		return nil, err
	}
	p.learnSSRCs(p.whip.PC)
	return p, nil
}

// learnSSRCs notes each video layer's SSRC, which its keyframe requests name, and the ids of
// the MID and RID header extensions that a simulcast layer's packets carry.
func (p *publisher) learnSSRCs(pc *webrtc.PeerConnection) {
	for _, tr := range pc.GetTransceivers() {
		s := tr.Sender()
		if s == nil || s.Track() == nil || s.Track().Kind() != webrtc.RTPCodecTypeVideo {
			continue
		}
		params := s.GetParameters()
		for _, ext := range params.HeaderExtensions {
			switch ext.URI {
			case sdp.SDESMidURI:
				p.ids.midID = uint8(ext.ID)
			case sdp.SDESRTPStreamIDURI:
				p.ids.ridID = uint8(ext.ID)
			}
		}
		p.ids.mid = tr.Mid()
		for _, enc := range params.Encodings {
			for _, l := range p.layers {
				if l.track.RID() == enc.RID {
					l.ssrc.Store(uint32(enc.SSRC))
				}
			}
		}
	}
}

// watchRTCP takes the keyframe requests (PLI, FIR) among pkts: the next frame of the layer
// they name (of every layer, for an SSRC not known) is a keyframe.
func (p *publisher) watchRTCP(pkts []rtcp.Packet) {
	for _, pkt := range pkts {
		var ssrcs []uint32
		switch k := pkt.(type) {
		case *rtcp.PictureLossIndication:
			ssrcs = []uint32{k.MediaSSRC}
		case *rtcp.FullIntraRequest:
			for _, e := range k.FIR {
				ssrcs = append(ssrcs, e.SSRC)
			}
		default:
			continue
		}
		p.plis.Add(1)
		for _, ssrc := range ssrcs {
			p.askKeyframe(ssrc)
		}
	}
}

// askKeyframe makes the next frame of the layer with ssrc a keyframe (of every layer when
// none has it).
func (p *publisher) askKeyframe(ssrc uint32) {
	known := false
	for _, l := range p.layers {
		known = known || l.ssrc.Load() == ssrc
	}
	for _, l := range p.layers {
		if !known || l.ssrc.Load() == ssrc {
			select {
			case l.keyframe <- struct{}{}:
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
	// Every layer sends a frame in as many packets as the top one, smaller in proportion to
	// its share, and packet i of frame n carries the same probe on every layer: a viewer
	// moved between layers at a key frame sees one unbroken probe sequence.
	sizes := framePackets(frameBytes(bitrate, fps), maxPayload)
	payload := make([]byte, maxPayload+probeSize)
	pkt := &rtp.Packet{Header: rtp.Header{Version: 2}}
	start := time.Now()
	var ts uint32
	keyEvery := int64(2 * fps)
	sinceKey := make([]int64, len(p.layers))
	key := make([]bool, len(p.layers))
	for k := int64(0); ; k++ {
		if !sleepUntil(ctx, due(start, k, fps)) {
			return
		}
		for j, l := range p.layers {
			select {
			case <-l.keyframe:
				sinceKey[j] = 0
			default:
			}
			key[j] = sinceKey[j]%keyEvery == 0
			sinceKey[j]++
		}
		ts += uint32(90000 / fps)
		for i, size := range sizes {
			probe := p.videoSeq.Load()
			sent := time.Now().UnixNano()
			for j, l := range p.layers {
				b := payload[:max(probeSize, size*l.share/1000)]
				clear(b[:probeOffset])
				if i == 0 {
					b[0] = 0x10 // VP8 descriptor: start of partition 0
					if !key[j] {
						b[1] = 0x01 // VP8 frame header: inter frame
					}
				}
				l.seq++
				pkt.SequenceNumber, pkt.Timestamp, pkt.Marker, pkt.Payload = l.seq, ts, i == len(sizes)-1, b
				p.ids.mark(&pkt.Header, l.track.RID())
				putProbe(b, sent, probe)
				if err := l.track.WriteRTP(pkt); err != nil {
					continue
				}
				p.videoSent.add(12 + len(b))
			}
			p.videoSeq.Add(1)
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

// close ends the WHIP session (DELETE, closing the PeerConnection) or leaves the room, and
// waits for the send loops (they end with their ctx).
func (p *publisher) close(*http.Client) {
	if p.sdk != nil {
		_ = p.sdk.Leave()
	} else {
		_ = p.whip.Close(true) // a DELETE that fails is not interesting at the end of a run
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
	firstKey   atomic.Int64 // unix nanos of the first packet of a video key frame
	connected  atomic.Int64 // unix nanos when ICE and DTLS were done (0: not known)
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
		if vp8KeyStart(payload) {
			rc.firstKey.CompareAndSwap(0, arrived.UnixNano())
		}
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

// vp8KeyStart reports whether a VP8 payload as the publishers send it (a one-byte payload
// descriptor) starts a key frame: S set, partition 0, the frame header's P bit clear.
func vp8KeyStart(payload []byte) bool {
	return len(payload) >= 2 && payload[0]&0x80 == 0 && payload[0]&0x10 != 0 && payload[0]&0x07 == 0 && payload[1]&0x01 == 0
}

// subscriber plays one publisher's tracks through WHEP and measures what arrives.
type subscriber struct {
	whep   *rtcclient.Session
	posted time.Time // when the offer was posted
	rec    reception
	lat    *latencies // shared by the run
}

// startSubscriber plays pub's room through WHEP, retrying while the server answers 409
// (nothing published yet) until ctx ends.
func startSubscriber(ctx context.Context, api *webrtc.API, hc *http.Client, baseURL string, pub *publisher, token string,
	audio bool, lat *latencies) (*subscriber, error) {
	kinds := []webrtc.RTPCodecType{webrtc.RTPCodecTypeVideo}
	if audio {
		kinds = append(kinds, webrtc.RTPCodecTypeAudio)
	}
	endpoint := strings.TrimRight(baseURL, "/") + "/whep/" + pub.room
	return rtcclient.UntilPublished(ctx, func() (*subscriber, error) {
		s := &subscriber{lat: lat, posted: time.Now()}
		s.rec.pub = pub
		var err error
		s.whep, err = rtcclient.StartWHEP(ctx, api, endpoint, kinds, func(tr *webrtc.TrackRemote) { s.rec.read(tr, s.lat) },
			rtcclient.WithToken(token), rtcclient.WithHTTPClient(hc),
			rtcclient.WithConnected(func() { s.rec.connected.CompareAndSwap(0, time.Now().UnixNano()) }))
		if err != nil {
			return nil, err
		}
		return s, nil
	})
}

func (s *subscriber) receptions() []*reception { return []*reception{&s.rec} }

func (s *subscriber) joinStarted() time.Time { return s.posted }

// close DELETEs the session, closes the PeerConnection and waits for its readers.
func (s *subscriber) close(*http.Client) { _ = s.whep.Close(true) }

// mark sets a simulcast layer's MID and RID header extensions on h (nothing without
// simulcast: the ids are 0).
func (ids rtpIDs) mark(h *rtp.Header, rid string) {
	if ids.ridID == 0 || rid == "" {
		return
	}
	if ids.midID != 0 {
		_ = h.SetExtension(ids.midID, []byte(ids.mid))
	}
	_ = h.SetExtension(ids.ridID, []byte(rid))
}
