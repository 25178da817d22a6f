package sip

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/pion/rtp"

	"github.com/jetmedia/jetmedia/events"
	"github.com/jetmedia/jetmedia/pipeline/mediabus"
	"github.com/jetmedia/jetmedia/pipeline/rtc"
)

// The caller's track as the room sees it: Opus as WebRTC carries it (RFC 7587).
const (
	OpusCodec       = "audio/opus"
	OpusClockRate   = 48000
	OpusChannels    = 2
	OpusFmtp        = "minptime=10;useinbandfec=1"
	opusPayloadType = 111 // viewers' forwarders rewrite it to what they negotiated
)

// Media timing.
const (
	frameInterval = 20 * time.Millisecond
	// jitterFrames bounds what an input may queue: more is dropped from the front, so a
	// burst costs at most 120 ms of delay.
	jitterFrames = 6
	// tracksEvery is how often a call asks which audio tracks its room has.
	tracksEvery = time.Second
	// mediaMarkEvery is how often RTP arrival is told to the core (it only needs to know
	// the caller is still sending).
	mediaMarkEvery = time.Second
	byeTimeout     = 5 * time.Second
)

// call is the shell of one call: its RTP socket, the caller's uplink (G.711 → Opus onto the
// track's subject, telephone-events → key presses) and downlink (the room's loudest tracks,
// Opus → mixed → G.711 to the caller). Its goroutines end with the session (end).
type call struct {
	s     *Server
	sess  *rtc.Session
	core  *Core
	dlg   dialog
	id    string // the dialog's id, the key of Server.calls
	conn  *net.UDPConn
	room  string
	peer  string
	sdpID uint64
	// sdpVersion is the o= line's version, raised with every answer.
	sdpVersion  atomic.Uint64
	remoteEnded atomic.Bool
	off         atomic.Pointer[Offer]
	dest        atomic.Pointer[netip.AddrPort]

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex // guards inputs, started, ended
	inputs  map[string]*input
	started bool
	ended   bool
}

// dialog is the SIP dialog of a call, whichever side opened it (sipgo's server and client
// dialog sessions).
type dialog interface {
	Bye(ctx context.Context) error
	Close() error
	ReadRequest(req *sip.Request, tx sip.ServerTransaction) error
	ReadBye(req *sip.Request, tx sip.ServerTransaction) error
}

var (
	_ dialog = (*sipgo.DialogServerSession)(nil)
	_ dialog = (*sipgo.DialogClientSession)(nil)
)

// rtpSocket opens a call's RTP socket on the gateway's address.
func (s *Server) rtpSocket() (*net.UDPConn, error) {
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: s.ip.AsSlice()})
	if err != nil {
		return nil, fmt.Errorf("sip: rtp socket: %w", err)
	}
	return conn, nil
}

// newCall opens the call's session on conn; the session's end ends the call (end), which
// closes conn. On error conn is closed.
func (s *Server) newCall(conn *net.UDPConn, dlg dialog, id, room string, core *Core, offer Offer) (*call, error) {
	peer := core.Peer()
	sess, err := s.cfg.Sessions.NewSession(rtc.SessionConfig{ID: peer.ID, Room: room, Transport: events.TransportSIP,
		Identity: peer.Identity, Core: core})
	if err != nil {
		_ = conn.Close()
		return nil, err
	}
	ctx, cancel := context.WithCancel(s.ctx)
	c := &call{s: s, sess: sess, core: core, dlg: dlg, id: id, conn: conn, room: room, peer: peer.ID,
		sdpID: rand.Uint64() >> 1, ctx: ctx, cancel: cancel, inputs: map[string]*input{}}
	c.setOffer(offer)
	s.mu.Lock()
	s.calls[id] = c
	s.mu.Unlock()
	sess.OnClose(c.end)
	return c, nil
}

func (c *call) offer() Offer { return *c.off.Load() }

// setOffer takes the caller's (new) offer: its address becomes where the room's audio goes
// until the caller's own packets show another (symmetric RTP, for callers behind NAT).
func (c *call) setOffer(o Offer) {
	c.off.Store(&o)
	if !o.Addr.Addr().IsUnspecified() {
		d := o.Addr
		c.dest.Store(&d)
	}
}

// local is the call's RTP address for the SDP answer.
func (c *call) local() netip.AddrPort {
	ap := c.conn.LocalAddr().(*net.UDPAddr).AddrPort()
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// start publishes the caller's track and starts the media goroutines.
func (c *call) start() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ended || c.started {
		return
	}
	c.started = true
	enc, err := c.s.opus.NewEncoder()
	if err != nil {
		c.sess.Log.Error("sip call without uplink audio", "err", err)
	} else {
		track := TrackInfo{Track: events.NewID(), Kind: "audio", Codec: OpusCodec, ClockRate: OpusClockRate,
			Channels: OpusChannels, Fmtp: OpusFmtp}
		now := c.s.cfg.Sessions.Now()
		c.sess.Step(func(rtc.Core) Output { return c.core.TrackStarted(now, track) })
		up := &uplink{c: c, enc: enc, send: c.s.cfg.Bus.Sender(c.room, track.Track, "0"),
			ssrc: rand.Uint32(), seq: uint16(rand.Uint32()), ts: rand.Uint32()}
		c.wg.Add(1)
		go func() { defer c.wg.Done(); defer enc.Close(); up.run() }()
	}
	c.wg.Add(2)
	go func() { defer c.wg.Done(); c.watchTracks() }()
	go func() { defer c.wg.Done(); c.downlink() }()
}

// end runs when the session ends (on its goroutine): it stops the media, hangs up unless the
// caller did, and forgets the call.
func (c *call) end() {
	c.mu.Lock()
	c.ended = true
	c.mu.Unlock()
	c.cancel()
	_ = c.conn.Close()
	c.wg.Wait()
	c.mu.Lock()
	for id, in := range c.inputs {
		in.close()
		delete(c.inputs, id)
	}
	c.mu.Unlock()
	s := c.s
	s.mu.Lock()
	delete(s.calls, c.id)
	s.mu.Unlock()
	if !c.remoteEnded.Load() {
		// The node ends the call (shutdown, media or session timeout): tell the caller. It runs
		// on the server's goroutine set, not the session's, which must not wait on the network.
		s.byes.Add(1)
		go func() {
			defer s.byes.Done()
			ctx, cancel := context.WithTimeout(context.Background(), byeTimeout)
			defer cancel()
			if err := c.dlg.Bye(ctx); err != nil {
				c.sess.Log.Info("sip BYE not answered", "err", err)
			} else {
				c.sess.Log.Debug("sip BYE answered")
			}
			_ = c.dlg.Close()
		}()
		return
	}
	_ = c.dlg.Close()
}

// uplink moves the caller's audio into the room.
type uplink struct {
	c    *call
	enc  *OpusEncoder
	send *mediabus.TrackSender
	ssrc uint32
	seq  uint16
	ts   uint32
	pcm  [FrameSamples * 8]int16
	fill int
	out  [1500]byte
	dtmf DTMFDetector
	mark time.Time
	sent bool
}

func (u *uplink) run() {
	c := u.c
	buf := make([]byte, 1500)
	var h rtp.Header
	for {
		n, from, err := c.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			return // closed by end
		}
		hl, err := h.Unmarshal(buf[:n])
		if err != nil || h.Version != 2 {
			continue
		}
		payload := buf[hl:n]
		if h.Padding && len(payload) > 0 {
			pad := int(payload[len(payload)-1])
			if pad > len(payload) {
				continue
			}
			payload = payload[:len(payload)-pad]
		}
		from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
		if d := c.dest.Load(); d == nil || *d != from {
			c.dest.Store(&from)
		}
		now := c.s.cfg.Sessions.Now()
		if now.Sub(u.mark) >= mediaMarkEvery {
			u.mark = now
			c.sess.Step(func(rtc.Core) Output { c.core.Media(now); return Output{} })
		}
		off := c.offer()
		switch {
		case h.PayloadType == uint8(off.Law):
			u.audio(off.Law, payload)
		case off.DTMF >= 0 && int(h.PayloadType) == off.DTMF:
			if p, ok := u.dtmf.Packet(h.Timestamp, payload); ok {
				c.sess.Step(func(rtc.Core) Output { return c.core.Digit(now, p) })
			}
		}
	}
}

// audio expands G.711 and encodes every whole 20 ms frame to one Opus packet.
func (u *uplink) audio(law Law, payload []byte) {
	if len(payload) > len(u.pcm)-u.fill {
		payload = payload[:len(u.pcm)-u.fill]
	}
	law.Decode(u.pcm[u.fill:], payload)
	u.fill += len(payload)
	start := 0
	for ; u.fill-start >= FrameSamples; start += FrameSamples {
		pkt, err := u.enc.Encode(u.pcm[start:start+FrameSamples], u.out[12:])
		if err != nil {
			u.c.s.rtp.Dropped.Add(1)
			continue
		}
		u.out[0] = 0x80
		u.out[1] = opusPayloadType
		if !u.sent {
			u.out[1] |= 0x80 // marker: the start of a talkspurt
			u.sent = true
		}
		binary.BigEndian.PutUint16(u.out[2:], u.seq)
		binary.BigEndian.PutUint32(u.out[4:], u.ts)
		binary.BigEndian.PutUint32(u.out[8:], u.ssrc)
		u.seq++
		u.ts += opusTicksPerFrame
		p := u.out[:12+len(pkt)]
		u.c.s.rtp.Packets.Add(1)
		u.c.s.rtp.Bytes.Add(uint64(len(p)))
		if u.send.Send(p) != nil {
			u.c.s.rtp.Dropped.Add(1)
		}
	}
	u.fill = copy(u.pcm[:], u.pcm[start:u.fill])
}

// input is one room track the caller may hear: its decoder and the samples decoded and not
// yet mixed.
type input struct {
	sub  *mediabus.MediaSubscription
	dec  *OpusDecoder
	hdr  rtp.Header
	tmp  []int16 // decode scratch, owned by the subscription's callback
	mu   sync.Mutex
	buf  []int16
	drop uint64
}

func newInput(lib *OpusLib) (*input, error) {
	dec, err := lib.NewDecoder()
	if err != nil {
		return nil, err
	}
	return &input{dec: dec, tmp: make([]int16, maxDecodeSamples), buf: make([]int16, 0, FrameSamples*jitterFrames)}, nil
}

// packet decodes one RTP packet of the track (it runs on the media bus's goroutine).
func (in *input) packet(data []byte) {
	hl, err := in.hdr.Unmarshal(data)
	if err != nil || hl >= len(data) {
		return
	}
	pcm, err := in.dec.Decode(data[hl:], in.tmp)
	if err != nil {
		return
	}
	in.mu.Lock()
	if over := len(in.buf) + len(pcm) - cap(in.buf); over > 0 {
		over = min(over, len(in.buf))
		in.buf = in.buf[:copy(in.buf, in.buf[over:])]
		in.drop += uint64(over)
	}
	in.buf = append(in.buf, pcm[:min(len(pcm), cap(in.buf)-len(in.buf))]...)
	in.mu.Unlock()
}

// pop moves one frame into dst, or reports there is none yet.
func (in *input) pop(dst []int16) bool {
	in.mu.Lock()
	defer in.mu.Unlock()
	if len(in.buf) < FrameSamples {
		return false
	}
	copy(dst, in.buf[:FrameSamples])
	in.buf = in.buf[:copy(in.buf, in.buf[FrameSamples:])]
	return true
}

func (in *input) close() {
	if in.sub != nil {
		_ = in.sub.Unsubscribe()
	}
	in.dec.Close()
}

// watchTracks keeps the call's inputs in line with the room's audio tracks (but the caller's
// own), at most MaxMixInputs of them.
func (c *call) watchTracks() {
	t := time.NewTicker(tracksEvery)
	defer t.Stop()
	for {
		ctx, cancel := context.WithTimeout(c.ctx, 2*time.Second)
		tracks, err := c.s.cfg.Tracks.AudioTracks(ctx, c.room)
		cancel()
		if err == nil {
			c.syncInputs(tracks)
		} else if !errors.Is(err, context.Canceled) {
			c.sess.Log.Debug("sip: room tracks not read", "err", err)
		}
		select {
		case <-c.ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (c *call) syncInputs(tracks []RoomTrack) {
	want := map[string]bool{}
	for _, t := range tracks {
		if t.Peer != c.peer && strings.EqualFold(t.Codec, OpusCodec) && len(want) < MaxMixInputs {
			want[t.Track] = true
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ended {
		return
	}
	for id, in := range c.inputs {
		if !want[id] {
			in.close()
			delete(c.inputs, id)
		}
	}
	for id := range want {
		if c.inputs[id] != nil {
			continue
		}
		in, err := newInput(c.s.opus)
		if err != nil {
			c.sess.Log.Warn("sip: cannot decode a room track", "track", id, "err", err)
			continue
		}
		if in.sub, err = c.s.cfg.Bus.Subscribe(c.room, id, "0", in.packet); err != nil {
			in.close()
			c.sess.Log.Warn("sip: cannot subscribe to a room track", "track", id, "err", err)
			continue
		}
		c.inputs[id] = in
	}
}

// downlink sends the caller a frame every 20 ms: the mix of the loudest inputs, silence when
// nobody speaks (phones and NATs expect a steady stream), nothing while the call is on hold.
func (c *call) downlink() {
	t := time.NewTicker(frameInterval)
	defer t.Stop()
	var (
		mix    [FrameSamples]int16
		frames [MaxMixInputs][FrameSamples]int16
		in     = make([][]int16, 0, MaxMixInputs)
		list   = make([]*input, 0, MaxMixInputs)
		pkt    [12 + FrameSamples]byte
		seq    = uint16(rand.Uint32())
		ts     = rand.Uint32()
		ssrc   = rand.Uint32()
	)
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-t.C:
		}
		list = list[:0]
		c.mu.Lock()
		for _, x := range c.inputs {
			list = append(list, x)
		}
		c.mu.Unlock()
		in = in[:0]
		for i, x := range list {
			if x.pop(frames[i][:]) {
				in = append(in, frames[i][:])
			}
		}
		Mix(mix[:], in, c.s.cfg.Speakers)
		off, dest := c.offer(), c.dest.Load()
		if off.Held() || dest == nil {
			ts += FrameSamples
			continue
		}
		pkt[0], pkt[1] = 0x80, byte(off.Law)
		binary.BigEndian.PutUint16(pkt[2:], seq)
		binary.BigEndian.PutUint32(pkt[4:], ts)
		binary.BigEndian.PutUint32(pkt[8:], ssrc)
		off.Law.Encode(pkt[12:], mix[:])
		seq++
		ts += FrameSamples
		if _, err := c.conn.WriteToUDPAddrPort(pkt[:], *dest); err != nil && c.ctx.Err() == nil {
			c.sess.Log.Debug("sip: rtp to caller", "err", err)
		}
	}
}
