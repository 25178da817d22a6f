package rtmp

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"os/exec"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg4audio"

	"github.com/jetmedia/jetmedia/events"
	"github.com/jetmedia/jetmedia/pipeline/rtc"
)

// Opus track constants: what browsers decode, as WebRTC carries it (RFC 7587).
const (
	OpusCodec     = "audio/opus"
	OpusClockRate = 48000
	OpusChannels  = 2
	OpusFmtp      = "minptime=10;useinbandfec=1"
	// opusPayloadType is what ffmpeg stamps; viewers' forwarders rewrite it.
	opusPayloadType = 111
	// opusFrame is one 20 ms Opus frame at 48 kHz: the timestamp gap bridged when ffmpeg
	// restarts.
	opusFrame = 960
)

// AudioConfig says how AAC audio becomes Opus.
type AudioConfig struct {
	// Disabled publishes video only.
	Disabled bool
	// FFmpeg is the ffmpeg binary ("": "ffmpeg" from PATH).
	FFmpeg string
	// Bitrate of the Opus stream in bit/s (default 64000).
	Bitrate int
}

// ffmpegArgs are the child's arguments: ADTS AAC on stdin, Opus RTP (20 ms frames, one per
// packet) to rtpPort with its RTCP to rtcpPort on loopback. No probing or input buffering:
// the audio should not lag the video more than the encoder's own delay.
func (c AudioConfig) ffmpegArgs(rtpPort, rtcpPort int) []string {
	br := c.Bitrate
	if br <= 0 {
		br = 64000
	}
	return []string{"-hide_banner", "-nostats", "-loglevel", "error",
		"-fflags", "nobuffer", "-probesize", "32", "-analyzeduration", "0",
		"-f", "aac", "-i", "pipe:0",
		"-vn", "-c:a", "libopus", "-b:a", strconv.Itoa(br), "-ar", "48000", "-ac", "2",
		"-frame_duration", "20", "-application", "audio",
		"-f", "rtp", "-payload_type", strconv.Itoa(opusPayloadType),
		fmt.Sprintf("rtp://127.0.0.1:%d?rtcpport=%d&pkt_size=1200", rtpPort, rtcpPort)}
}

// Transcoder turns one stream's AAC into Opus RTP with a supervised ffmpeg child: AAC access
// units go to its stdin as ADTS, its RTP comes back on a loopback UDP socket and leaves through
// out with this transcoder's own SSRC, sequence and timestamps (continuous across restarts). A
// child that exits is restarted after a second, at most maxRestarts times. Close stops it all
// and waits.
type Transcoder struct {
	cfg  AudioConfig
	asc  mpeg4audio.AudioSpecificConfig
	out  func(pkt []byte)
	log  *slog.Logger
	rtp  *net.UDPConn
	rtcp *net.UDPConn

	in     chan []byte // ADTS frames for the child's stdin
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once

	// Dropped counts AAC frames dropped because the child was not keeping up.
	Dropped atomic.Uint64
	// Packets counts Opus RTP packets sent through out.
	Packets atomic.Uint64

	// restamping state, owned by the UDP reader goroutine
	ssrc     uint32
	seq      uint16
	lastTS   uint32
	offset   uint32
	srcSSRC  uint32
	haveLast bool
}

const maxRestarts = 5

// ErrNoFFmpeg: audio cannot be transcoded because there is no ffmpeg binary.
var ErrNoFFmpeg = errors.New("rtmp: ffmpeg not found")

// NewTranscoder starts the child for an AAC stream described by asc.
func NewTranscoder(cfg AudioConfig, asc mpeg4audio.AudioSpecificConfig, out func(pkt []byte), log *slog.Logger) (*Transcoder, error) {
	bin := cfg.FFmpeg
	if bin == "" {
		bin = "ffmpeg"
	}
	path, err := exec.LookPath(bin)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNoFFmpeg, err)
	}
	cfg.FFmpeg = path
	loop := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}
	rtpConn, err := net.ListenUDP("udp4", loop)
	if err != nil {
		return nil, fmt.Errorf("rtmp: audio socket: %w", err)
	}
	rtcpConn, err := net.ListenUDP("udp4", loop)
	if err != nil {
		_ = rtpConn.Close()
		return nil, fmt.Errorf("rtmp: audio socket: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t := &Transcoder{cfg: cfg, asc: asc, out: out, log: log, rtp: rtpConn, rtcp: rtcpConn,
		in: make(chan []byte, 64), ctx: ctx, cancel: cancel,
		ssrc: rand.Uint32(), seq: uint16(rand.Uint32()), offset: rand.Uint32()}
	t.wg.Add(3)
	go t.supervise()
	go t.readRTP()
	go t.drainRTCP()
	return t, nil
}

// WriteAAC queues one AAC access unit; it never blocks (the RTMP read loop calls it).
func (t *Transcoder) WriteAAC(au []byte) {
	pkt, err := mpeg4audio.ADTSPackets{{Type: t.asc.Type, SampleRate: t.asc.SampleRate,
		ChannelConfig: t.asc.ChannelConfig, AU: au}}.Marshal()
	if err != nil {
		t.Dropped.Add(1)
		return
	}
	select {
	case t.in <- pkt:
	default:
		t.Dropped.Add(1)
	}
}

// Close stops the child and the sockets and waits for every goroutine. Idempotent.
func (t *Transcoder) Close() {
	t.once.Do(func() {
		t.cancel()
		_ = t.rtp.Close()
		_ = t.rtcp.Close()
	})
	t.wg.Wait()
}

// supervise runs the child, restarting it when it exits before Close.
func (t *Transcoder) supervise() {
	defer t.wg.Done()
	for restarts := 0; ; restarts++ {
		err := t.runChild()
		if t.ctx.Err() != nil {
			return
		}
		if restarts == maxRestarts {
			t.log.Error("rtmp audio transcoder gave up: ffmpeg keeps exiting; the stream goes on without audio", "restarts", restarts, "err", err)
			return
		}
		t.log.Warn("rtmp audio transcoder exited; restarting in 1 s", "err", err)
		select {
		case <-t.ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
}

// runChild runs ffmpeg once, feeding it until it exits or the transcoder closes.
func (t *Transcoder) runChild() error {
	rtpPort := t.rtp.LocalAddr().(*net.UDPAddr).Port
	rtcpPort := t.rtcp.LocalAddr().(*net.UDPAddr).Port
	cmd := exec.CommandContext(t.ctx, t.cfg.FFmpeg, t.cfg.ffmpegArgs(rtpPort, rtcpPort)...)
	cmd.WaitDelay = 2 * time.Second
	var stderr limitedBuffer
	cmd.Stderr = &stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return fmt.Errorf("ffmpeg stdin: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", t.cfg.FFmpeg, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	for {
		select {
		case err := <-exited:
			return fmt.Errorf("ffmpeg: %w: %s", err, stderr.String())
		case pkt := <-t.in:
			if _, err := stdin.Write(pkt); err != nil {
				_ = cmd.Process.Kill()
				<-exited
				return fmt.Errorf("ffmpeg stdin: %w: %s", err, stderr.String())
			}
		case <-t.ctx.Done():
			_ = stdin.Close()
			<-exited // CommandContext kills it
			return nil
		}
	}
}

// readRTP restamps the child's packets and sends them on.
func (t *Transcoder) readRTP() {
	defer t.wg.Done()
	buf := make([]byte, 1500)
	for {
		n, _, err := t.rtp.ReadFromUDP(buf)
		if err != nil {
			return
		}
		if n < 12 || buf[0]>>6 != 2 {
			continue
		}
		t.restamp(buf[:n])
		t.Packets.Add(1)
		t.out(buf[:n])
	}
}

// restamp rewrites a child's RTP header in place: this transcoder's SSRC and payload type, a
// continuous sequence, and timestamps that carry on one frame after the previous child's.
func (t *Transcoder) restamp(p []byte) {
	ssrc := binary.BigEndian.Uint32(p[8:12])
	ts := binary.BigEndian.Uint32(p[4:8])
	if ssrc != t.srcSSRC || !t.haveLast {
		if t.haveLast {
			t.offset = t.lastTS + opusFrame - ts
		} else {
			t.offset -= ts
		}
		t.srcSSRC, t.haveLast = ssrc, true
	}
	out := ts + t.offset
	t.lastTS = out
	p[1] = p[1]&0x80 | opusPayloadType
	binary.BigEndian.PutUint16(p[2:4], t.seq)
	t.seq++
	binary.BigEndian.PutUint32(p[4:8], out)
	binary.BigEndian.PutUint32(p[8:12], t.ssrc)
}

// drainRTCP reads (and drops) the child's sender reports, so its sends never fail.
func (t *Transcoder) drainRTCP() {
	defer t.wg.Done()
	buf := make([]byte, 1500)
	for {
		if _, _, err := t.rtcp.ReadFromUDP(buf); err != nil {
			return
		}
	}
}

// limitedBuffer keeps the first 2 KiB of a child's stderr for the log.
type limitedBuffer struct {
	mu sync.Mutex
	b  []byte
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if room := 2048 - len(l.b); room > 0 {
		l.b = append(l.b, p[:min(room, len(p))]...)
	}
	return len(p), nil
}

func (l *limitedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return string(l.b)
}

// startAudio publishes the Opus track and feeds the transcoder, or says why the stream has
// no audio.
func (m *media) startAudio() {
	st, reg := m.st, m.s.cfg.Sessions
	if m.s.cfg.Audio.Disabled || st.audio.Config == nil {
		st.reader.OnDataMPEG4Audio(st.atrack, func(time.Duration, []byte) {})
		m.sess.Log.Warn("rtmp audio not published: transcoding is off (--rtmp-audio-off); video only")
		return
	}
	track := TrackInfo{Track: events.NewID(), Kind: "audio", Codec: OpusCodec, ClockRate: OpusClockRate,
		Channels: OpusChannels, Fmtp: OpusFmtp}
	send := m.s.cfg.Bus.Sender(m.sess.Room, track.Track, "0")
	tc, err := NewTranscoder(m.s.cfg.Audio, *st.audio.Config, func(p []byte) {
		m.s.rtp.Packets.Add(1)
		m.s.rtp.Bytes.Add(uint64(len(p)))
		if send.Send(p) != nil {
			m.s.rtp.Dropped.Add(1)
		}
	}, m.sess.Log)
	if err != nil {
		st.reader.OnDataMPEG4Audio(st.atrack, func(time.Duration, []byte) {})
		m.sess.Log.Warn("rtmp audio not published: cannot transcode AAC to Opus; video only", "err", err)
		return
	}
	m.audio = tc
	now := reg.Now()
	m.sess.Step(func(rtc.Core) Output { return m.core.TrackStarted(now, track) })
	st.reader.OnDataMPEG4Audio(st.atrack, func(_ time.Duration, au []byte) { tc.WriteAAC(au) })
}
