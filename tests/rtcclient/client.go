// Package rtcclient is a small WHIP/WHEP client on pion for tests and tools: a publisher that
// sends synthetic VP8 and Opus RTP, and a viewer that counts what it receives. It talks to a
// server only through HTTP and WebRTC, like any other client.
package rtcclient

import (
	"context"
	"errors"
	"fmt"
	"io"
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
)

// NewAPI returns a pion API that gathers loopback candidates only, so tests never send
// traffic off the machine.
func NewAPI() (*webrtc.API, error) {
	me := &webrtc.MediaEngine{}
	if err := me.RegisterDefaultCodecs(); err != nil {
		return nil, err
	}
	ir := &interceptor.Registry{}
	if err := webrtc.RegisterDefaultInterceptors(me, ir); err != nil {
		return nil, err
	}
	var se webrtc.SettingEngine
	se.SetIncludeLoopbackCandidate(true)
	se.SetInterfaceFilter(func(name string) bool { return name == "lo" })
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	return webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithInterceptorRegistry(ir), webrtc.WithSettingEngine(se)), nil
}

// HTTPError is a non-2xx reply.
type HTTPError struct {
	Status     int
	Body       string
	RetryAfter string
}

func (e *HTTPError) Error() string {
	return fmt.Sprintf("HTTP %d: %s", e.Status, strings.TrimSpace(e.Body))
}

// Option configures Publish and Play.
type Option func(*options)

type options struct{ token string }

// WithToken sends token as the bearer token (Authorization: Bearer) of the POST and of the
// session's DELETE.
func WithToken(token string) Option { return func(o *options) { o.token = token } }

func collect(opts []Option) options {
	var o options
	for _, f := range opts {
		f(&o)
	}
	return o
}

func setToken(req *http.Request, token string) {
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
}

// exchange posts the offer (after ICE gathering) and applies the answer; it returns the
// session URL.
func exchange(ctx context.Context, pc *webrtc.PeerConnection, endpoint, token string) (string, error) {
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
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader(pc.LocalDescription().SDP))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/sdp")
	setToken(req, token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusCreated {
		return "", &HTTPError{Status: resp.StatusCode, Body: string(body), RetryAfter: resp.Header.Get("Retry-After")}
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: string(body)}); err != nil {
		return "", err
	}
	loc, err := url.Parse(endpoint)
	if err != nil {
		return "", err
	}
	rel, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || resp.Header.Get("Location") == "" {
		return "", fmt.Errorf("no usable Location header: %q", resp.Header.Get("Location"))
	}
	return loc.ResolveReference(rel).String(), nil
}

func deleteSession(location, token string) error {
	req, err := http.NewRequest(http.MethodDelete, location, nil)
	if err != nil {
		return err
	}
	setToken(req, token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return &HTTPError{Status: resp.StatusCode, Body: string(body)}
	}
	return nil
}

// Publisher sends synthetic audio and video through WHIP.
type Publisher struct {
	PC       *webrtc.PeerConnection
	Location string
	token    string
	// PLIs counts keyframe requests received from the server.
	PLIs atomic.Int64
	// Sent counts RTP packets sent.
	Sent atomic.Int64

	video, audio *webrtc.TrackLocalStaticRTP
	cancel       context.CancelFunc
	wg           sync.WaitGroup
	once         sync.Once
}

// Publish starts publishing to baseURL/whip/room (with the options, e.g. WithToken) and sends
// packets until Close: video at 30 packets/s (one per frame, a keyframe every 2 s or on PLI)
// and audio at 50 packets/s.
func Publish(ctx context.Context, api *webrtc.API, baseURL, room string, opts ...Option) (*Publisher, error) {
	o := collect(opts)
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return nil, err
	}
	p := &Publisher{PC: pc, token: o.token}
	p.video, err = webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, "video", "pub")
	if err != nil {
		return nil, err
	}
	p.audio, err = webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, "audio", "pub")
	if err != nil {
		return nil, err
	}
	var senders []*webrtc.RTPSender
	for _, t := range []webrtc.TrackLocal{p.video, p.audio} {
		tr, err := pc.AddTransceiverFromTrack(t, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
		if err != nil {
			_ = pc.Close()
			return nil, err
		}
		senders = append(senders, tr.Sender())
	}
	loc, err := exchange(ctx, pc, strings.TrimRight(baseURL, "/")+"/whip/"+room, o.token)
	if err != nil {
		_ = pc.Close()
		return nil, err
	}
	p.Location = loc
	runCtx, cancel := context.WithCancel(context.Background())
	p.cancel = cancel
	keyframe := make(chan struct{}, 1)
	p.wg.Add(3)
	go func() {
		defer p.wg.Done()
		for {
			pkts, _, err := senders[0].ReadRTCP()
			if err != nil {
				return
			}
			for _, pk := range pkts {
				switch pk.(type) {
				case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest:
					p.PLIs.Add(1)
					select {
					case keyframe <- struct{}{}:
					default:
					}
				}
			}
		}
	}()
	go func() {
		defer p.wg.Done()
		for {
			if _, _, err := senders[1].ReadRTCP(); err != nil {
				return
			}
		}
	}()
	go func() {
		defer p.wg.Done()
		p.send(runCtx, keyframe)
	}()
	return p, nil
}

// send paces synthetic RTP. A VP8 keyframe is marked in the payload descriptor so that
// receivers can tell it from a delta frame.
func (p *Publisher) send(ctx context.Context, keyframe <-chan struct{}) {
	vt := time.NewTicker(time.Second / 30)
	at := time.NewTicker(20 * time.Millisecond)
	defer vt.Stop()
	defer at.Stop()
	var vseq, aseq uint16
	var vts, ats uint32
	frame := 0
	payload := make([]byte, 1000)
	apayload := make([]byte, 80)
	for {
		select {
		case <-ctx.Done():
			return
		case <-keyframe:
			frame = 0
		case <-vt.C:
			key := frame%60 == 0
			frame++
			payload[0] = 0x10 // VP8 descriptor: start of partition
			if key {
				payload[1] = 0x00 // keyframe bit clear = keyframe in VP8 payload header
			} else {
				payload[1] = 0x01
			}
			vseq++
			vts += 3000
			_ = p.video.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, Marker: true, SequenceNumber: vseq, Timestamp: vts}, Payload: payload})
			p.Sent.Add(1)
		case <-at.C:
			aseq++
			ats += 960
			_ = p.audio.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: aseq, Timestamp: ats}, Payload: apayload})
			p.Sent.Add(1)
		}
	}
}

// Close stops sending, DELETEs the session (unless leave is false: then the connection is just
// dropped) and closes the PeerConnection.
func (p *Publisher) Close(leave bool) error {
	var err error
	p.once.Do(func() {
		p.cancel()
		if leave {
			err = deleteSession(p.Location, p.token)
		}
		err = errors.Join(err, p.PC.Close())
		p.wg.Wait()
	})
	return err
}

// Viewer plays a room through WHEP and counts what arrives.
type Viewer struct {
	PC       *webrtc.PeerConnection
	Location string
	token    string
	// Video and Audio count RTP packets received per kind.
	Video, Audio atomic.Int64
	// FirstVideo is when the first video packet arrived (zero until then).
	firstVideo atomic.Int64
	// videoSSRC and lastVideoSeq identify the latest video packet, for NACK tests.
	videoSSRC    atomic.Uint32
	lastVideoSeq atomic.Uint32
	// keyFrames counts the video key frames that began to arrive; videoCodec is the video
	// track's MIME type once it arrived.
	keyFrames  atomic.Int64
	videoCodec atomic.Pointer[string]

	wg   sync.WaitGroup
	once sync.Once
}

// Play starts playing baseURL/whep/room (or path, if given, e.g. "room/peer"), retrying
// while the server answers 409 (nothing published yet) until ctx ends.
func Play(ctx context.Context, api *webrtc.API, baseURL, path string, opts ...Option) (*Viewer, error) {
	o := collect(opts)
	for {
		v, err := playOnce(ctx, api, baseURL, path, o)
		var he *HTTPError
		if err == nil || !errors.As(err, &he) || he.Status != http.StatusConflict {
			return v, err
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("still 409 when giving up: %w", err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func playOnce(ctx context.Context, api *webrtc.API, baseURL, path string, o options) (*Viewer, error) {
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return nil, err
	}
	v := &Viewer{PC: pc, token: o.token}
	for _, k := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeVideo, webrtc.RTPCodecTypeAudio} {
		if _, err := pc.AddTransceiverFromKind(k, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
			_ = pc.Close()
			return nil, err
		}
	}
	pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		v.wg.Add(1)
		defer v.wg.Done()
		counter := &v.Audio
		if tr.Kind() == webrtc.RTPCodecTypeVideo {
			counter = &v.Video
		}
		mime := tr.Codec().MimeType
		if counter == &v.Video {
			v.videoCodec.Store(&mime)
		}
		buf := make([]byte, 1500)
		var h rtp.Header
		lastKey, anyKey := uint32(0), false
		for {
			n, _, err := tr.Read(buf)
			if err != nil {
				return
			}
			if counter == &v.Video && n >= 12 {
				v.firstVideo.CompareAndSwap(0, time.Now().UnixNano())
				v.videoSSRC.Store(uint32(tr.SSRC()))
				v.lastVideoSeq.Store(uint32(buf[2])<<8 | uint32(buf[3]))
				// A key frame's packets share a timestamp: count it once.
				if hn, err := h.Unmarshal(buf[:n]); err == nil && StartsKeyFrame(mime, buf[hn:n]) &&
					(!anyKey || h.Timestamp != lastKey) {
					lastKey, anyKey = h.Timestamp, true
					v.keyFrames.Add(1)
				}
			}
			counter.Add(1)
		}
	})
	loc, err := exchange(ctx, pc, strings.TrimRight(baseURL, "/")+"/whep/"+path, o.token)
	if err != nil {
		_ = pc.Close()
		return nil, err
	}
	v.Location = loc
	return v, nil
}

// FirstVideo is when the first video packet arrived, or the zero time.
func (v *Viewer) FirstVideo() time.Time {
	ns := v.firstVideo.Load()
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns)
}

// KeyFrames is how many video key frames began to arrive.
func (v *Viewer) KeyFrames() int64 { return v.keyFrames.Load() }

// VideoCodec is the MIME type of the video track received, "" before it arrived.
func (v *Viewer) VideoCodec() string {
	if m := v.videoCodec.Load(); m != nil {
		return *m
	}
	return ""
}

// NACKLastVideo reports the latest video packet as lost (an RTCP generic NACK), so the server
// resends it from its cache. It returns the sequence number asked for.
func (v *Viewer) NACKLastVideo() (uint16, error) {
	ssrc := v.videoSSRC.Load()
	if ssrc == 0 {
		return 0, errors.New("no video received yet")
	}
	seq := uint16(v.lastVideoSeq.Load())
	return seq, v.PC.WriteRTCP([]rtcp.Packet{&rtcp.TransportLayerNack{
		SenderSSRC: 1, MediaSSRC: ssrc, Nacks: []rtcp.NackPair{{PacketID: seq}},
	}})
}

// Close DELETEs the session and closes the PeerConnection.
func (v *Viewer) Close() error {
	var err error
	v.once.Do(func() {
		err = errors.Join(deleteSession(v.Location, v.token), v.PC.Close())
		v.wg.Wait()
	})
	return err
}
