package rtmp

import (
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bluenviron/gortmplib"
	"github.com/bluenviron/gortmplib/pkg/codecs"
	"github.com/bluenviron/gortmplib/pkg/message"

	"github.com/jetmedia/jetmedia/events"
	"github.com/jetmedia/jetmedia/pipeline/auth"
	"github.com/jetmedia/jetmedia/pipeline/mediabus"
	"github.com/jetmedia/jetmedia/pipeline/rtc"
)

// TokenVerifier checks an access token; *auth.Keyring is one.
type TokenVerifier interface {
	Verify(token string, now time.Time) (auth.Claims, error)
}

// Config wires a Server. Zero durations take the defaults.
type Config struct {
	// Listen is the TCP address publishers connect to (host:port; port 0 picks one).
	Listen   string
	Sessions *rtc.Registry
	Bus      *mediabus.MediaBus
	Auth     TokenVerifier
	Logger   *slog.Logger
	// Audio transcodes AAC to Opus; a zero value looks for ffmpeg in PATH.
	Audio AudioConfig
	// HandshakeTimeout bounds everything before the session starts: handshake, connect,
	// publish, token check and the first two seconds of media the track probe reads (10 s).
	HandshakeTimeout time.Duration
	// ReadTimeout ends a session whose publisher sends nothing for this long (10 s).
	ReadTimeout time.Duration
}

// preAuthBudget is how many bytes a connection may send before its token is checked:
// handshake (1537 bytes), connect, createStream and publish fit many times over; a client
// that sends more without authenticating is cut off instead of being buffered.
const preAuthBudget = 64 << 10

// Stats are a server's counters since it started.
type Stats struct {
	// Refused counts connections turned away before a session started (bad URL, token,
	// codec, protocol error, shutdown).
	Refused uint64
	// PacketsIn and BytesIn count RTP packets made from publishers' media (bytes: whole
	// packets); Dropped those not put on their media subject.
	PacketsIn, BytesIn, Dropped uint64
}

// Server accepts RTMP publishers. Close stops it and waits for every connection's goroutine.
type Server struct {
	cfg Config
	log *slog.Logger
	ln  net.Listener
	wg  sync.WaitGroup

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool

	refused atomic.Uint64
	rtp     rtc.RTPCounters
}

// Listen starts a server on cfg.Listen.
func Listen(cfg Config) (*Server, error) {
	if cfg.Sessions == nil || cfg.Bus == nil || cfg.Auth == nil {
		return nil, errors.New("rtmp: Sessions, Bus and Auth are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.HandshakeTimeout <= 0 {
		cfg.HandshakeTimeout = 10 * time.Second
	}
	if cfg.ReadTimeout <= 0 {
		cfg.ReadTimeout = 10 * time.Second
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("rtmp listen %s: %w", cfg.Listen, err)
	}
	s := &Server{cfg: cfg, log: cfg.Logger.With("component", events.TransportRTMP), ln: ln, conns: map[net.Conn]struct{}{}}
	s.log.Info("rtmp listening", "url", "rtmp://"+ln.Addr().String()+"/"+App+"/<room>", "audio", !cfg.Audio.Disabled)
	s.wg.Add(1)
	go s.accept()
	return s, nil
}

// Addr is the address the server listens on.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Stats returns the server's counters.
func (s *Server) Stats() Stats {
	return Stats{Refused: s.refused.Load(), PacketsIn: s.rtp.Packets.Load(), BytesIn: s.rtp.Bytes.Load(),
		Dropped: s.rtp.Dropped.Load()}
}

// Close stops accepting, closes every connection and waits for their goroutines. Sessions
// end with the registry's Close (reason shutdown) when it runs first, as the node does; a
// connection closed here ends its session as disconnected. Idempotent.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		s.wg.Wait()
		return nil
	}
	s.closed = true
	conns := make([]net.Conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	err := s.ln.Close()
	for _, c := range conns {
		_ = c.Close()
	}
	s.wg.Wait()
	return err
}

func (s *Server) accept() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return // closed
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			_ = c.Close()
			continue
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go func() {
			defer s.wg.Done()
			defer s.forget(c)
			s.serve(c)
		}()
	}
}

func (s *Server) forget(c net.Conn) {
	_ = c.Close()
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

// refuse logs why a connection was turned away; nothing was recorded for it.
func (s *Server) refuse(c net.Conn, msg string, err error, attrs ...any) {
	s.refused.Add(1)
	s.log.Warn("rtmp publish refused: "+msg, append([]any{"remote", c.RemoteAddr().String(), "err", err}, attrs...)...)
}

// errStreamDeleted: the publisher ended its stream with a command (deleteStream,
// closeStream, FCUnpublish) rather than by dropping the connection.
var errStreamDeleted = errors.New("rtmp: publisher ended the stream")

// commandConn ends reading at the publisher's end-of-stream commands, which gortmplib's
// Reader skips like any other command.
type commandConn struct{ gortmplib.Conn }

func (c commandConn) Read() (message.Message, error) {
	m, err := c.Conn.Read()
	if cmd, ok := m.(*message.CommandAMF0); ok && err == nil {
		switch cmd.Name {
		case "deleteStream", "closeStream", "FCUnpublish":
			return nil, errStreamDeleted
		}
	}
	return m, err
}

// limitedConn cuts a connection off once it has read more than its budget; lift removes the
// limit (after the token check).
type limitedConn struct {
	net.Conn
	left   int64
	lifted bool
}

func (c *limitedConn) Read(b []byte) (int, error) {
	if c.lifted {
		return c.Conn.Read(b)
	}
	if c.left <= 0 {
		return 0, errors.New("rtmp: too much data before the publish was authorised")
	}
	if int64(len(b)) > c.left {
		b = b[:c.left]
	}
	n, err := c.Conn.Read(b)
	c.left -= int64(n)
	return n, err
}

// stream is what a connection established before its session starts.
type stream struct {
	room    string
	claims  auth.Claims
	encoder string
	reader  *gortmplib.Reader
	video   *codecs.H264
	vtrack  *gortmplib.Track
	audio   *codecs.MPEG4Audio
	atrack  *gortmplib.Track
}

// serve runs one connection: handshake, publish, token, tracks; then the session.
func (s *Server) serve(c net.Conn) {
	st, err := s.open(c)
	if err != nil {
		return // refused and logged
	}
	s.publish(c, st)
}

// open takes a connection up to the point where its session can start. Every failure is
// logged and counted here and nothing is recorded.
func (s *Server) open(c net.Conn) (*stream, error) {
	_ = c.SetDeadline(time.Now().Add(s.cfg.HandshakeTimeout))
	lc := &limitedConn{Conn: c, left: preAuthBudget}
	sc := &gortmplib.ServerConn{RW: lc}
	if err := sc.Initialize(); err != nil {
		s.refuse(c, "handshake or connect failed", err)
		return nil, err
	}
	if err := sc.AcceptConn(); err != nil {
		s.refuse(c, "no publish command", err)
		return nil, err
	}
	if !sc.Publish {
		err := errors.New("play is not served over RTMP (use WHEP)")
		_ = sc.RejectAction()
		s.refuse(c, "not a publisher", err)
		return nil, err
	}
	room, token, err := ParseStreamURL(sc.URL)
	if err == nil {
		var claims auth.Claims
		if claims, err = s.cfg.Auth.Verify(token, s.cfg.Sessions.Now()); err == nil {
			if err = claims.Check(room, auth.Publish); err == nil {
				return s.probe(c, lc, sc, &stream{room: room, claims: claims, encoder: sc.FlashVer})
			}
		}
	}
	_ = sc.RejectAction()
	s.refuse(c, "bad stream URL or token", err, "app_url", redact(sc.URL.Path))
	return nil, err
}

// redact keeps a URL path's room and drops a token in it.
func redact(path string) string {
	if len(path) > 80 {
		path = path[:80]
	}
	for i, n := 0, 0; i < len(path); i++ {
		if path[i] == '/' {
			if n++; n == 3 {
				return path[:i] + "/…"
			}
		}
	}
	return path
}

// probe accepts the publish and reads the stream's tracks (gortmplib reads up to two seconds
// of media to find them): H.264 video is required, AAC audio is optional.
func (s *Server) probe(c net.Conn, lc *limitedConn, sc *gortmplib.ServerConn, st *stream) (*stream, error) {
	lc.lifted = true
	if err := sc.AcceptAction(); err != nil {
		s.refuse(c, "publish not acknowledged", err)
		return nil, err
	}
	st.reader = &gortmplib.Reader{Conn: commandConn{sc}}
	if err := initReader(st.reader); err != nil {
		s.refuse(c, "no usable tracks", err, "room", st.room)
		return nil, err
	}
	var other []string
	for _, t := range st.reader.Tracks() {
		switch cd := t.Codec.(type) {
		case *codecs.H264:
			if st.video == nil {
				st.video, st.vtrack = cd, t
			}
		case *codecs.MPEG4Audio:
			if st.audio == nil {
				st.audio, st.atrack = cd, t
			}
		default:
			other = append(other, fmt.Sprintf("%T", cd))
			continue
		}
		if t != st.vtrack && t != st.atrack {
			other = append(other, fmt.Sprintf("second %T", t.Codec))
		}
	}
	if st.video == nil {
		err := fmt.Errorf("rtmp: no H.264 video track (tracks: %v); only H.264 video and AAC audio are taken", other)
		s.refuse(c, "unsupported codecs", err, "room", st.room)
		return nil, err
	}
	if _, ok := H264Fmtp(st.video.SPS); !ok {
		err := errors.New("rtmp: the H.264 track has no usable SPS")
		s.refuse(c, "unsupported codecs", err, "room", st.room)
		return nil, err
	}
	if len(other) > 0 {
		// gortmplib needs a callback for every track it found; refusing is clearer than a
		// stream whose other tracks vanish.
		err := fmt.Errorf("rtmp: tracks other than one H.264 video and one AAC audio: %v", other)
		s.refuse(c, "unsupported codecs", err, "room", st.room)
		return nil, err
	}
	return st, nil
}

// publish runs the session of an accepted stream until the connection ends.
func (s *Server) publish(c net.Conn, st *stream) {
	reg := s.cfg.Sessions
	peer := rtc.Peer{ID: events.NewID(), Node: reg.Node(), Identity: st.claims.Identity, Name: st.claims.Name}
	core := NewCore(peer)
	sess, err := reg.NewSession(rtc.SessionConfig{ID: peer.ID, Room: st.room, Transport: events.TransportRTMP,
		Identity: st.claims.Identity, Core: core})
	if err != nil {
		s.refuse(c, "no session", err, "room", st.room)
		return
	}
	// The session's end (shutdown, or its own) closes the connection, which ends the read loop.
	sess.OnClose(func() { _ = c.Close() })
	now := reg.Now()
	remote := c.RemoteAddr().String()
	if err := sess.StepWait(func(rtc.Core) Output { return core.Published(now, remote, st.encoder) }); err != nil {
		s.refuse(c, "join not recorded", err, "room", st.room)
		sess.Step(func(rtc.Core) Output { return core.Shutdown(reg.Now()) })
		<-sess.Done()
		return
	}
	fmtp, _ := H264Fmtp(st.video.SPS)
	sess.Started("remote", remote, "encoder", st.encoder, "video", fmtp, "audio", st.audio != nil)
	m := &media{s: s, sess: sess, core: core, st: st}
	m.start()
	err = m.read(c)
	m.stop()
	now = reg.Now()
	if errors.Is(err, errStreamDeleted) {
		sess.Step(func(rtc.Core) Output { return core.StreamDeleted(now) })
	} else {
		sess.Log.Debug("rtmp connection ended", "err", err)
		sess.Step(func(rtc.Core) Output { return core.ConnectionLost(now) })
	}
	<-sess.Done()
}

// media is the media side of one session: the tracks' packetizers and senders.
type media struct {
	s     *Server
	sess  *rtc.Session
	core  *Core
	st    *stream
	audio *Transcoder
}

// start publishes the video track (and the audio track when it can be transcoded) and hooks
// the packetizer to the reader.
func (m *media) start() {
	st, reg := m.st, m.s.cfg.Sessions
	fmtp, _ := H264Fmtp(st.video.SPS)
	video := TrackInfo{Track: events.NewID(), Kind: "video", Codec: H264Codec, ClockRate: H264ClockRate, Fmtp: fmtp}
	now := reg.Now()
	m.sess.Step(func(rtc.Core) Output { return m.core.TrackStarted(now, video) })
	send := m.s.cfg.Bus.Sender(m.sess.Room, video.Track, "0")
	pz := NewPacketizer(st.video.SPS, st.video.PPS, rand.Uint32(), uint16(rand.Uint32()), rand.Uint32())
	warned := false
	st.reader.OnDataH264(st.vtrack, func(pts, dts time.Duration, au [][]byte) {
		if pts != dts && !warned {
			warned = true
			m.sess.Log.Warn("rtmp stream has B-frames (composition time offset ≠ 0): passed through in decode order with presentation timestamps; browsers may show jerky video; encode with B-frames off (x264 bframes=0, ffmpeg -bf 0)")
		}
		pkts, _ := pz.Packetize(pts, au)
		for _, p := range pkts {
			m.s.rtp.Packets.Add(1)
			m.s.rtp.Bytes.Add(uint64(len(p)))
			if send.Send(p) != nil {
				m.s.rtp.Dropped.Add(1)
			}
		}
	})
	if st.audio != nil {
		m.startAudio()
	}
}

// read moves the stream's messages through the reader's callbacks until the connection ends
// or stops sending for ReadTimeout.
func (m *media) read(c net.Conn) error {
	for {
		// Writes too: gortmplib acknowledges received bytes from within Read.
		if err := c.SetDeadline(time.Now().Add(m.s.cfg.ReadTimeout)); err != nil {
			return err
		}
		if err := readOne(m.st.reader); err != nil {
			return err
		}
	}
}

// initReader reads the stream's tracks, turning a library panic into an error.
func initReader(r *gortmplib.Reader) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("rtmp: malformed stream (library panic: %v)", p)
		}
	}()
	return r.Initialize()
}

// readOne reads one message; a panic in the RTMP library on input it did not expect ends the
// connection instead of the node.
func readOne(r *gortmplib.Reader) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("rtmp: malformed stream (library panic: %v)", p)
		}
	}()
	return r.Read()
}

func (m *media) stop() {
	if m.audio != nil {
		m.audio.Close()
	}
}
