package loadgen

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/dtls/v3"
	"github.com/pion/dtls/v3/pkg/crypto/selfsign"
	"github.com/pion/interceptor/pkg/twcc"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"
	"golang.org/x/net/ipv4"

	"github.com/jetmedia/jetmedia/tests/rtcclient"
)

// The lite viewer: a receive-only WebRTC client made of pion's protocol libraries (STUN,
// DTLS, SRTP, RTCP, SDP) instead of a PeerConnection. A PeerConnection spends ~13-15 µs of
// CPU per received packet (a read per packet per socket, ICE and DTLS mux goroutines,
// buffers, interceptors, goroutine hand-offs); on the server's own machine that CPU is taken
// from the server and shows up in the latency the run measures. A lite viewer's packets
// arrive on a UDP socket shared by up to liteViewersPerSocket viewers, each with a loopback
// address of its own (so the server sees distinct candidates), read in batches (recvmmsg)
// by one goroutine per socket that decrypts them in place and records them: no copies, no
// hand-offs, no allocation per packet. Only the DTLS handshake runs elsewhere (the joining
// goroutine), fed through a channel.

const (
	// liteViewersPerSocket viewers share a socket against a loopback server; elsewhere
	// each has its own, bound to the local address that routes to the server.
	liteViewersPerSocket = 32
	liteBatch            = 32
	// liteIdle is the longest a socket's reader sleeps with no timed work due: it wakes for
	// its viewers' ICE checks, reports and NACK retries only when they are due, and when a
	// joining viewer kicks it, so an idle wake-up costs nothing per packet.
	liteIdle           = time.Second
	liteCheckInterval  = 50 * time.Millisecond
	liteKeepalive      = 2 * time.Second
	liteReportInterval = time.Second
	// liteFeedbackInterval is how often a viewer with transport-cc sends transport-wide
	// feedback: Chromium's default.
	liteFeedbackInterval = 100 * time.Millisecond
	liteHandshakeWithin  = 15 * time.Second
	liteReadBuffer       = 4 << 20
)

// liteHub is one run's lite viewers: the certificate they share and their sockets.
type liteHub struct {
	loopback    bool
	host        netip.Addr // the server's address from the URL, when it is one
	localIP     netip.Addr // not on loopback: the local address routing to the server
	cert        tls.Certificate
	fingerprint string
	lat         *latencies
	// twcc: viewers offer transport-wide sequence numbers and send feedback every
	// liteFeedbackInterval, as browsers do.
	twcc bool

	mu       sync.Mutex
	sockets  []*liteSocket
	nextAddr int
	closed   bool
	wg       sync.WaitGroup // the sockets' readers
}

// newLiteHub makes the run's certificate and, off loopback, finds the local address that
// routes to the server.
func newLiteHub(baseURL string, lat *latencies) (*liteHub, error) {
	u, err := url.Parse(baseURL)
	if err != nil {
		return nil, fmt.Errorf("lite viewer: %w", err)
	}
	cert, err := selfsign.GenerateSelfSigned()
	if err != nil {
		return nil, fmt.Errorf("lite viewer: certificate: %w", err)
	}
	h := &liteHub{loopback: isLoopback(u), cert: cert, fingerprint: certFingerprint(cert.Certificate[0]),
		lat: lat}
	if h.loopback {
		return h, nil
	}
	// A UDP "dial" sends nothing: it asks the routing table for the source address.
	c, err := net.Dial("udp4", net.JoinHostPort(u.Hostname(), "9"))
	if err != nil {
		return nil, fmt.Errorf("lite viewer: route to %s: %w", u.Hostname(), err)
	}
	defer c.Close()
	h.localIP = c.LocalAddr().(*net.UDPAddr).AddrPort().Addr().Unmap()
	h.host = c.RemoteAddr().(*net.UDPAddr).AddrPort().Addr().Unmap()
	return h, nil
}

// loopbackAddr is the i-th viewer's own loopback address: 127.0.0.2, 127.0.0.3, ...
// (Linux routes all of 127/8 to lo), skipping .0, .1 and .255 host bytes.
func loopbackAddr(i int) netip.Addr {
	c := byte(i%253 + 2)
	b := byte(i / 253 % 256)
	a := byte(i / (253 * 256) % 255)
	return netip.AddrFrom4([4]byte{127, a, b, c})
}

// attach gives v a socket (opening one if none has room) and an address.
func (h *liteHub) attach(v *liteViewer) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return errors.New("lite viewer: run is ending")
	}
	var s *liteSocket
	if h.loopback {
		for _, c := range h.sockets {
			if c.count < liteViewersPerSocket {
				s = c
				break
			}
		}
	}
	if s == nil {
		bind := netip.AddrPortFrom(netip.IPv4Unspecified(), 0)
		if !h.loopback {
			bind = netip.AddrPortFrom(h.localIP, 0)
		}
		var err error
		if s, err = openLiteSocket(h, bind); err != nil {
			return err
		}
		h.sockets = append(h.sockets, s)
		h.wg.Go(s.run)
	}
	v.sock = s
	if h.loopback {
		v.local = loopbackAddr(h.nextAddr)
		h.nextAddr++
		v.oob = (&ipv4.ControlMessage{Src: v.local.AsSlice()}).Marshal()
	} else {
		v.local = h.localIP
	}
	v.localAP = netip.AddrPortFrom(v.local, s.port)
	s.count++
	s.setViewer(v.local, v)
	return nil
}

// detach takes v off its socket, and closes the socket when v was its last viewer.
func (h *liteHub) detach(v *liteViewer) {
	h.mu.Lock()
	defer h.mu.Unlock()
	s := v.sock
	if s == nil {
		return
	}
	s.setViewer(v.local, nil)
	s.count--
	if s.count > 0 {
		return
	}
	for i, c := range h.sockets {
		if c == s {
			h.sockets = append(h.sockets[:i], h.sockets[i+1:]...)
			break
		}
	}
	_ = s.conn.Close()
}

// close closes what sockets are left and waits for their readers.
func (h *liteHub) close() {
	h.mu.Lock()
	h.closed = true
	for _, s := range h.sockets {
		_ = s.conn.Close()
	}
	h.sockets = nil
	h.mu.Unlock()
	h.wg.Wait()
}

// liteSocket is one UDP socket and its reader, which owns everything of its viewers after
// their handshakes.
type liteSocket struct {
	hub   *liteHub
	conn  *net.UDPConn
	pc    *ipv4.PacketConn
	port  uint16
	count int // viewers attached; guarded by hub.mu

	mu    sync.Mutex // serialises table updates
	table atomic.Pointer[map[netip.Addr]*liteViewer]
	// kicks counts changes that may bring timed work forward (a viewer added, its answer or
	// keys set); the reader re-plans when it has moved.
	kicks atomic.Uint64

	// Owned by the reader.
	hdr     rtp.Header
	dirty   []*liteViewer // viewers with new gaps to NACK after this batch
	nackBuf []uint16
}

func openLiteSocket(h *liteHub, bind netip.AddrPort) (*liteSocket, error) {
	conn, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(bind))
	if err != nil {
		return nil, fmt.Errorf("lite viewer: listen %s: %w", bind, err)
	}
	// A frame's burst to 32 viewers is some 230 packets (~500 KB of kernel buffers on
	// loopback), more than the default receive buffer holds when the reader is a little
	// late; the kernel caps this at net.core.rmem_max.
	_ = conn.SetReadBuffer(liteReadBuffer)
	pc := ipv4.NewPacketConn(conn)
	// IP_PKTINFO: each datagram's destination address says which viewer it is for.
	if err := pc.SetControlMessage(ipv4.FlagDst, true); err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("lite viewer: IP_PKTINFO: %w", err)
	}
	// Each datagram's arrival time from the kernel: the latency measured ends when the packet
	// reached the viewer's socket, not when this reader got round to it.
	if err := stampArrivals(conn); err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("lite viewer: %w", err)
	}
	s := &liteSocket{hub: h, conn: conn, pc: pc, port: conn.LocalAddr().(*net.UDPAddr).AddrPort().Port()}
	empty := map[netip.Addr]*liteViewer{}
	s.table.Store(&empty)
	return s, nil
}

// setViewer adds (v non-nil) or removes the viewer at addr: a new table each time, so the
// reader reads it without a lock.
func (s *liteSocket) setViewer(addr netip.Addr, v *liteViewer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	old := *s.table.Load()
	t := make(map[netip.Addr]*liteViewer, len(old)+1)
	for k, x := range old {
		t[k] = x
	}
	if v == nil {
		delete(t, addr)
	} else {
		t[addr] = v
	}
	s.table.Store(&t)
	s.kick()
}

// kick makes the reader plan its timed work again now: a past read deadline wakes it.
func (s *liteSocket) kick() {
	s.kicks.Add(1)
	_ = s.conn.SetReadDeadline(time.Unix(1, 0))
}

// write sends b from v's address to the server.
func (s *liteSocket) write(v *liteViewer, b []byte, to netip.AddrPort) {
	_, _, _ = s.conn.WriteMsgUDPAddrPort(b, v.oob, to)
}

// run reads datagrams in batches until the socket closes. Between batches it does its
// viewers' timed work when due; the read deadline is the next time any is.
func (s *liteSocket) run() {
	msgs := make([]ipv4.Message, liteBatch)
	for i := range msgs {
		msgs[i].Buffers = [][]byte{make([]byte, 1500)}
		msgs[i].OOB = make([]byte, 128)
	}
	var next time.Time
	seen := ^uint64(0)
	for {
		if now := time.Now(); !now.Before(next) || s.kicks.Load() != seen {
			// A kick after this load is either seen by the check below or sets its past
			// deadline after ours: no kick is lost.
			seen = s.kicks.Load()
			next = s.tick(now)
			if err := s.conn.SetReadDeadline(next); err != nil {
				return
			}
			if s.kicks.Load() != seen {
				continue
			}
		}
		n, err := s.pc.ReadBatch(msgs, 0)
		if err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				next = time.Time{} // due, or kicked
				continue
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue // e.g. a queued ICMP error: the socket is still good
		}
		now := time.Now()
		tbl := *s.table.Load()
		for i := range msgs[:n] {
			s.handle(tbl, &msgs[i], now)
		}
		if len(s.dirty) > 0 {
			for _, v := range s.dirty {
				v.nackDirty = false
				if k := v.keys.Load(); k != nil {
					s.nackBuf = v.sendNACKs(now, k, s.nackBuf)
				}
			}
			clear(s.dirty)
			s.dirty = s.dirty[:0]
			// The retries are due before the planned wake-up.
			if retry := now.Add(nackRetry); retry.Before(next) {
				next = retry
				if err := s.conn.SetReadDeadline(next); err != nil {
					return
				}
			}
		}
	}
}

// handle demultiplexes one datagram: to the viewer by destination address, then by kind.
func (s *liteSocket) handle(tbl map[netip.Addr]*liteViewer, m *ipv4.Message, now time.Time) {
	dst, arrived, ok := parseCmsgs(m.OOB[:m.NN])
	if !ok {
		return
	}
	at := now
	if arrived != 0 {
		at = time.Unix(0, arrived)
	}
	v := tbl[dst]
	if v == nil {
		return
	}
	b := m.Buffers[0][:m.N]
	switch classify(b) {
	case kindRTP:
		if v.onRTP(b, at, now, &s.hdr) {
			s.dirty = append(s.dirty, v)
		}
	case kindSTUN:
		if ua, ok := m.Addr.(*net.UDPAddr); ok {
			v.onSTUN(b, ua.AddrPort(), now)
		}
	case kindDTLS:
		select {
		case v.dtlsIn <- bytes.Clone(b):
		default: // the handshake is not reading (over, or overrun): DTLS retransmits
		}
	case kindRTCP, kindOther:
		// Sender reports and the like: nothing the run measures.
	}
}

// tick does every viewer's timed work due at now and returns when the next is due.
func (s *liteSocket) tick(now time.Time) time.Time {
	next := now.Add(liteIdle)
	for _, v := range *s.table.Load() {
		var due time.Time
		s.nackBuf, due = v.tick(now, s.nackBuf)
		if !due.IsZero() && due.Before(next) {
			next = due
		}
	}
	return next
}

// liteRemote is the server's side of a lite viewer's session, from the answer.
type liteRemote struct {
	creds                iceCreds
	addr                 netip.AddrPort
	videoSSRC, audioSSRC uint32
	videoPT, audioPT     int
}

// liteKeys are a viewer's SRTP contexts: recv decrypts the server's RTP, send encrypts the
// viewer's RTCP. Only the socket's reader uses them once they are published.
type liteKeys struct {
	recv, send *srtp.Context
}

// liteTrack is what a viewer's reader keeps of one received track.
type liteTrack struct {
	rec   *trackRecv
	video bool
	clock int64 // RTP clock rate
	ssrc  uint32
	nack  nackTracker
	rr    rrStats
}

// liteViewer is one lite WHEP viewer.
type liteViewer struct {
	hub      *liteHub
	sock     *liteSocket
	local    netip.Addr
	localAP  netip.AddrPort
	oob      []byte // IP_PKTINFO with local as the source, on a shared socket
	creds    iceCreds
	tiebreak uint64
	rtcpSSRC uint32
	token    string
	location string
	posted   time.Time
	rec      reception

	remote atomic.Pointer[liteRemote] // set once the answer is read
	keys   atomic.Pointer[liteKeys]   // set once DTLS is done
	iceUp  chan struct{}              // closed by the reader at the first successful check
	dtlsIn chan []byte                // DTLS records, reader to handshake
	dconn  *liteDTLSConn
	dtls   *dtls.Conn

	closeOnce sync.Once

	// Owned by the socket's reader.
	iceOK      bool
	nextCheck  time.Time
	nextReport time.Time
	started    int64 // Unix nanos, the origin of RTP-clock arrival times
	nackDirty  bool
	video      liteTrack
	audio      liteTrack
	// With transport-cc: the arrivals of the transport-wide sequence numbers (extension
	// id twccID) since the last feedback, and when the next is due.
	twccID       uint8
	twccRec      *twcc.Recorder
	nextFeedback time.Time
}

func newLiteViewer(h *liteHub, pub *publisher, token string) *liteViewer {
	v := &liteViewer{hub: h, token: token, creds: iceCreds{ufrag: rand.Text()[:16], pwd: rand.Text()},
		tiebreak: mrand.Uint64(), rtcpSSRC: mrand.Uint32(), iceUp: make(chan struct{}),
		dtlsIn: make(chan []byte, 64), started: time.Now().UnixNano()}
	v.rec.pub = pub
	v.video = liteTrack{rec: &v.rec.video, video: true, clock: 90000}
	v.audio = liteTrack{rec: &v.rec.audio, clock: 48000}
	v.dconn = &liteDTLSConn{v: v, closed: make(chan struct{}), wake: make(chan struct{})}
	return v
}

// startLiteViewer joins pub's room through WHEP as a lite viewer: offer, answer, ICE, DTLS.
// A 409 (nothing published yet) is retried like startSubscriber does.
func (h *liteHub) startLiteViewer(ctx context.Context, hc *http.Client, baseURL string, pub *publisher, token string, audio bool) (*liteViewer, error) {
	v := newLiteViewer(h, pub, token)
	if err := h.attach(v); err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			v.close(hc)
		}
	}()
	offer := liteOffer{ufrag: v.creds.ufrag, pwd: v.creds.pwd, fingerprint: h.fingerprint, cand: v.localAP,
		audio: audio, twcc: h.twcc, sessionID: mrand.Uint64() >> 1}.sdp()
	endpoint := strings.TrimRight(baseURL, "/") + "/whep/" + pub.room
	var answer string
	for {
		v.posted = time.Now()
		var err error
		answer, v.location, err = rtcclient.PostOffer(ctx, hc, endpoint, token, offer)
		if err == nil {
			break
		}
		if !rtcclient.IsNotPublished(err) {
			return nil, err
		}
		if !sleepUntil(ctx, time.Now().Add(100*time.Millisecond)) {
			return nil, fmt.Errorf("%w (still 409 when giving up): %w", rtcclient.ErrNotPublished, err)
		}
	}
	a, err := parseLiteAnswer(answer)
	if err != nil {
		return nil, err
	}
	rm := &liteRemote{creds: iceCreds{ufrag: a.ufrag, pwd: a.pwd}, addr: a.pickCandidate(h.loopback, h.host),
		videoSSRC: a.videoSSRC, audioSSRC: a.audioSSRC, videoPT: a.videoPT, audioPT: a.audioPT}
	v.dconn.raddr = net.UDPAddrFromAddrPort(rm.addr)
	if h.twcc && a.twccID != 0 {
		// Set before the answer is published to the reader, which uses them from then on.
		v.twccID, v.twccRec = a.twccID, twcc.NewRecorder(v.rtcpSSRC)
	}
	v.remote.Store(rm)
	v.sock.kick() // the first ICE check now

	hsCtx, cancel := context.WithTimeout(ctx, liteHandshakeWithin)
	defer cancel()
	keys, err := v.handshake(hsCtx, a)
	if err != nil {
		return nil, fmt.Errorf("lite viewer: %w", err)
	}
	v.rec.connected.Store(time.Now().UnixNano())
	v.keys.Store(keys)
	v.sock.kick() // reports from now on
	ok = true
	return v, nil
}

// handshake runs DTLS in the role the answer gave this side, checks the server's
// certificate against the answer's fingerprint and derives the SRTP contexts.
func (v *liteViewer) handshake(ctx context.Context, a *liteAnswer) (*liteKeys, error) {
	verify := func(raw [][]byte, _ [][]*x509.Certificate) error {
		if len(raw) == 0 {
			return errors.New("dtls: server sent no certificate")
		}
		if got := certFingerprint(raw[0]); !fingerprintEqual(got, a.fingerprint) {
			return fmt.Errorf("dtls: server certificate %s, answer says %s", got, a.fingerprint)
		}
		return nil
	}
	common := []dtls.Option{
		dtls.WithCertificates(v.hub.cert),
		dtls.WithSRTPProtectionProfiles(dtls.SRTP_AEAD_AES_128_GCM, dtls.SRTP_AES128_CM_HMAC_SHA1_80),
		dtls.WithInsecureSkipVerify(true), // self-signed: the fingerprint is the check
		dtls.WithVerifyPeerCertificate(verify),
	}
	var conn *dtls.Conn
	var err error
	if a.dtlsClient {
		// The server's ICE must have a pair before it takes DTLS from us.
		select {
		case <-v.iceUp:
		case <-ctx.Done():
			return nil, fmt.Errorf("ice: no check succeeded: %w", ctx.Err())
		}
		opts := make([]dtls.ClientOption, 0, len(common))
		for _, o := range common {
			opts = append(opts, o)
		}
		conn, err = dtls.ClientWithOptions(v.dconn, v.dconn.raddr, opts...)
	} else {
		opts := []dtls.ServerOption{dtls.WithClientAuth(dtls.RequireAnyClientCert)}
		for _, o := range common {
			opts = append(opts, o)
		}
		conn, err = dtls.ServerWithOptions(v.dconn, v.dconn.raddr, opts...)
	}
	if err != nil {
		return nil, fmt.Errorf("dtls: %w", err)
	}
	v.dtls = conn
	if err := conn.HandshakeContext(ctx); err != nil {
		return nil, fmt.Errorf("dtls handshake: %w", err)
	}
	var profile srtp.ProtectionProfile
	switch p, _ := conn.SelectedSRTPProtectionProfile(); p {
	case dtls.SRTP_AEAD_AES_128_GCM:
		profile = srtp.ProtectionProfileAeadAes128Gcm
	case dtls.SRTP_AES128_CM_HMAC_SHA1_80:
		profile = srtp.ProtectionProfileAes128CmHmacSha1_80
	default:
		return nil, fmt.Errorf("dtls: no SRTP protection profile agreed (%v)", p)
	}
	state, ok := conn.ConnectionState()
	if !ok {
		return nil, errors.New("dtls: no connection state after the handshake")
	}
	cfg := srtp.Config{Profile: profile}
	if err := cfg.ExtractSessionKeysFromDTLS(&state, a.dtlsClient); err != nil {
		return nil, fmt.Errorf("srtp keys: %w", err)
	}
	recv, err := srtp.CreateContext(cfg.Keys.RemoteMasterKey, cfg.Keys.RemoteMasterSalt, profile,
		srtp.SRTPNoReplayProtection(), srtp.SRTCPNoReplayProtection()) // the tool counts duplicates itself
	if err != nil {
		return nil, fmt.Errorf("srtp: %w", err)
	}
	send, err := srtp.CreateContext(cfg.Keys.LocalMasterKey, cfg.Keys.LocalMasterSalt, profile)
	if err != nil {
		return nil, fmt.Errorf("srtp: %w", err)
	}
	return &liteKeys{recv: recv, send: send}, nil
}

// onRTP decrypts one SRTP packet in place and records it; true when it opened a new gap to
// NACK (and the viewer is not yet listed for it). Runs on the socket's reader.
func (v *liteViewer) onRTP(b []byte, arrived, now time.Time, hdr *rtp.Header) bool {
	k := v.keys.Load()
	if k == nil {
		return false
	}
	plain, err := k.recv.DecryptRTP(b, b, hdr)
	if err != nil {
		return false
	}
	tr := v.track(hdr.SSRC, hdr.PayloadType)
	if tr == nil {
		return false
	}
	if v.twccRec != nil {
		// As a browser does: the arrival at the socket, per transport-wide sequence number.
		if ext := hdr.GetExtension(v.twccID); len(ext) >= 2 {
			v.twccRec.Record(hdr.SSRC, uint16(ext[0])<<8|uint16(ext[1]), arrived.UnixMicro())
		}
	}
	nowNs := now.UnixNano()
	gap := tr.nack.received(hdr.SequenceNumber, nowNs)
	tr.rr.add(hdr.SequenceNumber, hdr.Timestamp, (nowNs-v.started)*tr.clock/int64(time.Second))
	v.rec.record(plain, tr.rec, tr.video, arrived, now, v.hub.lat)
	if gap && !v.nackDirty {
		v.nackDirty = true
		return true
	}
	return false
}

// track is the received track a packet belongs to: by the answer's SSRCs, else by payload
// type.
func (v *liteViewer) track(ssrc uint32, pt uint8) *liteTrack {
	rm := v.remote.Load()
	var t *liteTrack
	switch {
	case rm.videoSSRC != 0 && ssrc == rm.videoSSRC:
		t = &v.video
	case rm.audioSSRC != 0 && ssrc == rm.audioSSRC:
		t = &v.audio
	case int(pt) == rm.videoPT:
		t = &v.video
	case int(pt) == rm.audioPT:
		t = &v.audio
	default:
		return nil
	}
	if t.ssrc != ssrc {
		t.ssrc, t.nack, t.rr = ssrc, nackTracker{}, rrStats{}
	}
	return t
}

// onSTUN answers the server's checks and notes our checks' successes. Runs on the reader.
func (v *liteViewer) onSTUN(b []byte, from netip.AddrPort, now time.Time) {
	var remote iceCreds
	if rm := v.remote.Load(); rm != nil {
		remote = rm.creds
	}
	from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
	rep, err := handleSTUN(b, from, v.creds, remote)
	if err != nil {
		return
	}
	if rep.response != nil {
		v.sock.write(v, rep.response, from)
	}
	if rep.succeeded && !v.iceOK {
		v.iceOK = true
		v.nextCheck = now.Add(liteKeepalive)
		close(v.iceUp)
	}
}

// tick sends what is due at now (an ICE check, receiver reports, NACK retries) and returns
// when more is due (zero: nothing until a kick). Runs on the reader; buf is scratch for
// NACKed sequence numbers, returned for reuse.
func (v *liteViewer) tick(now time.Time, buf []uint16) ([]uint16, time.Time) {
	rm := v.remote.Load()
	if rm == nil {
		return buf, time.Time{}
	}
	if !now.Before(v.nextCheck) {
		if m, err := bindingRequest(v.creds, rm.creds, v.tiebreak); err == nil {
			v.sock.write(v, m.Raw, rm.addr)
		}
		v.nextCheck = now.Add(liteCheckInterval)
		if v.iceOK {
			v.nextCheck = now.Add(liteKeepalive)
		}
	}
	k := v.keys.Load()
	if k == nil {
		return buf, v.nextCheck
	}
	if !now.Before(v.nextReport) {
		if !v.nextReport.IsZero() {
			v.sendReports(k)
		}
		v.nextReport = now.Add(liteReportInterval)
	}
	due := v.nextCheck
	if v.nextReport.Before(due) {
		due = v.nextReport
	}
	if v.twccRec != nil {
		if !now.Before(v.nextFeedback) {
			if fb := v.twccRec.BuildFeedbackPacket(); len(fb) > 0 {
				v.sendRTCP(k, fb...)
			}
			v.nextFeedback = now.Add(liteFeedbackInterval)
		}
		if v.nextFeedback.Before(due) {
			due = v.nextFeedback
		}
	}
	buf = v.sendNACKs(now, k, buf)
	if v.video.nack.pending() || v.audio.nack.pending() {
		if retry := now.Add(nackRetry / 2); retry.Before(due) {
			due = retry
		}
	}
	return buf, due
}

// sendReports sends one receiver report with a block per media SSRC received.
func (v *liteViewer) sendReports(k *liteKeys) {
	rr := &rtcp.ReceiverReport{SSRC: v.rtcpSSRC}
	for _, t := range []*liteTrack{&v.video, &v.audio} {
		if t.rr.started {
			rr.Reports = append(rr.Reports, t.rr.report(t.ssrc))
		}
	}
	if len(rr.Reports) > 0 {
		v.sendRTCP(k, rr)
	}
}

// sendNACKs asks for the gaps due at now, one generic NACK per media SSRC.
func (v *liteViewer) sendNACKs(now time.Time, k *liteKeys, buf []uint16) []uint16 {
	for _, t := range []*liteTrack{&v.video, &v.audio} {
		if !t.nack.pending() {
			continue
		}
		buf = t.nack.due(now.UnixNano(), buf[:0])
		if len(buf) > 0 {
			v.sendRTCP(k, &rtcp.TransportLayerNack{SenderSSRC: v.rtcpSSRC, MediaSSRC: t.ssrc,
				Nacks: rtcp.NackPairsFromSequenceNumbers(buf)})
		}
	}
	return buf
}

func (v *liteViewer) sendRTCP(k *liteKeys, pkts ...rtcp.Packet) {
	raw, err := rtcp.Marshal(pkts)
	if err != nil {
		return
	}
	out, err := k.send.EncryptRTCP(nil, raw, nil)
	if err != nil {
		return
	}
	if rm := v.remote.Load(); rm != nil {
		v.sock.write(v, out, rm.addr)
	}
}

func (v *liteViewer) receptions() []*reception { return []*reception{&v.rec} }

func (v *liteViewer) joinStarted() time.Time { return v.posted }

// close DELETEs the session, ends DTLS and takes the viewer off its socket.
func (v *liteViewer) close(hc *http.Client) {
	v.closeOnce.Do(func() {
		if v.location != "" { // a DELETE that fails is not interesting at the end of a run
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_ = rtcclient.Delete(ctx, hc, v.location, v.token)
			cancel()
		}
		if v.dtls != nil {
			_ = v.dtls.Close() // its close_notify still leaves through the socket
		}
		_ = v.dconn.Close()
		v.hub.detach(v)
	})
}

// liteDTLSConn is the net.PacketConn pion/dtls runs over: reads come from the socket's reader
// through a channel, writes go out of the shared socket with the viewer's address.
type liteDTLSConn struct {
	v      *liteViewer
	raddr  *net.UDPAddr
	closed chan struct{}
	once   sync.Once

	mu       sync.Mutex
	deadline time.Time
	wake     chan struct{} // closed when the read deadline changes
}

func (c *liteDTLSConn) ReadFrom(p []byte) (int, net.Addr, error) {
	for {
		c.mu.Lock()
		dl, wake := c.deadline, c.wake
		c.mu.Unlock()
		var timeout <-chan time.Time
		var timer *time.Timer
		if !dl.IsZero() {
			d := time.Until(dl)
			if d <= 0 {
				return 0, nil, os.ErrDeadlineExceeded
			}
			timer = time.NewTimer(d)
			timeout = timer.C
		}
		select {
		case b := <-c.v.dtlsIn:
			stopTimer(timer)
			return copy(p, b), c.raddr, nil
		case <-c.closed:
			stopTimer(timer)
			return 0, nil, net.ErrClosed
		case <-wake:
			stopTimer(timer)
		case <-timeout:
			return 0, nil, os.ErrDeadlineExceeded
		}
	}
}

func stopTimer(t *time.Timer) {
	if t != nil {
		t.Stop()
	}
}

func (c *liteDTLSConn) WriteTo(p []byte, _ net.Addr) (int, error) {
	select {
	case <-c.closed:
		return 0, net.ErrClosed
	default:
	}
	c.v.sock.write(c.v, p, c.raddr.AddrPort())
	return len(p), nil
}

func (c *liteDTLSConn) Close() error {
	c.once.Do(func() { close(c.closed) })
	return nil
}

func (c *liteDTLSConn) LocalAddr() net.Addr { return net.UDPAddrFromAddrPort(c.v.localAP) }

func (c *liteDTLSConn) SetDeadline(t time.Time) error { return c.SetReadDeadline(t) }

func (c *liteDTLSConn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.deadline = t
	close(c.wake)
	c.wake = make(chan struct{})
	return nil
}

func (c *liteDTLSConn) SetWriteDeadline(time.Time) error { return nil }
