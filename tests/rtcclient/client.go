// Package rtcclient is the WHIP/WHEP client on pion that the end-to-end tests and the load
// tool (tests/loadgen) share: the pion API a client uses (api.go), the HTTP exchanges
// (http.go), a session that publishes tracks or plays a room and owns its goroutines
// (session.go), and on top of those a test publisher that sends synthetic VP8 and Opus RTP
// and a viewer that counts what it receives and its key frames. It talks to a server only
// through HTTP and WebRTC, like any other client, and imports no server package.
package rtcclient

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// Publisher sends synthetic audio and video through WHIP.
type Publisher struct {
	PC       *webrtc.PeerConnection
	Location string
	// PLIs counts keyframe requests received from the server.
	PLIs atomic.Int64
	// Sent counts RTP packets sent.
	Sent atomic.Int64

	session      *Session
	video, audio *webrtc.TrackLocalStaticRTP
	cancel       context.CancelFunc
	wg           sync.WaitGroup
	once         sync.Once
}

// Publish starts publishing to baseURL/whip/room (with the options, e.g. WithToken) and sends
// packets until Close: video at 30 packets/s (one per frame, a keyframe every 2 s or on PLI)
// and audio at 50 packets/s.
func Publish(ctx context.Context, api *webrtc.API, baseURL, room string, opts ...Option) (*Publisher, error) {
	p := &Publisher{}
	var err error
	p.video, err = webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, "video", "pub")
	if err != nil {
		return nil, err
	}
	p.audio, err = webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, "audio", "pub")
	if err != nil {
		return nil, err
	}
	keyframe := make(chan struct{}, 1)
	onRTCP := func(track int, pkts []rtcp.Packet) {
		if n := KeyFrameRequests(pkts); track == 0 && n > 0 {
			p.PLIs.Add(int64(n))
			select {
			case keyframe <- struct{}{}:
			default:
			}
		}
	}
	p.session, err = StartWHIP(ctx, api, strings.TrimRight(baseURL, "/")+"/whip/"+room,
		[]webrtc.TrackLocal{p.video, p.audio}, onRTCP, opts...)
	if err != nil {
		return nil, err
	}
	p.PC, p.Location = p.session.PC, p.session.Location
	runCtx, cancel := context.WithCancel(context.Background())
	p.cancel = cancel
	p.wg.Go(func() { p.send(runCtx, keyframe) })
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
		p.wg.Wait()
		err = p.session.Close(leave)
	})
	return err
}

// Viewer plays a room through WHEP and counts what arrives.
type Viewer struct {
	PC       *webrtc.PeerConnection
	Location string
	session  *Session
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
}

// Play starts playing baseURL/whep/room (or path, if given, e.g. "room/peer"), retrying
// while the server answers 409 (nothing published yet) until ctx ends.
func Play(ctx context.Context, api *webrtc.API, baseURL, path string, opts ...Option) (*Viewer, error) {
	return UntilPublished(ctx, func() (*Viewer, error) {
		v := &Viewer{}
		var err error
		v.session, err = StartWHEP(ctx, api, strings.TrimRight(baseURL, "/")+"/whep/"+path,
			[]webrtc.RTPCodecType{webrtc.RTPCodecTypeVideo, webrtc.RTPCodecTypeAudio}, v.read, opts...)
		if err != nil {
			return nil, err
		}
		v.PC, v.Location = v.session.PC, v.session.Location
		return v, nil
	})
}

// read counts a track's packets (and a video track's key frames) until the track ends.
func (v *Viewer) read(tr *webrtc.TrackRemote) {
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

// Close DELETEs the session, closes the PeerConnection and waits for its readers.
func (v *Viewer) Close() error { return v.session.Close(true) }
