package sip

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/jetmedia/jetmedia/events"
	"github.com/jetmedia/jetmedia/pipeline/mediabus"
	"github.com/jetmedia/jetmedia/pipeline/rtc"
)

// RoomTrack is an audio track of a room the caller may hear.
type RoomTrack struct {
	Track, Peer, Codec string
}

// Tracks answers which audio tracks a room has; the wiring fills it from the rooms projection.
type Tracks interface {
	AudioTracks(ctx context.Context, room string) ([]RoomTrack, error)
}

// TracksFunc adapts a function to Tracks.
type TracksFunc func(ctx context.Context, room string) ([]RoomTrack, error)

// AudioTracks calls f.
func (f TracksFunc) AudioTracks(ctx context.Context, room string) ([]RoomTrack, error) {
	return f(ctx, room)
}

// Config wires a Server.
type Config struct {
	// Listen is host:port for both UDP and TCP (port 0 picks one free on both).
	Listen string
	// Domain is the host callers dial (sip:<room>@Domain) and the digest realm; "" takes any
	// host and realm "jetmedia".
	Domain string
	// Users are the accounts that may call in.
	Users []Credential
	// Speakers is how many of the room's loudest tracks a caller hears at once (default 3).
	Speakers int
	Timers   Timers
	Sessions *rtc.Registry
	Bus      *mediabus.MediaBus
	Tracks   Tracks
	// Opus is the codec library; nil loads the system's libopus (calls are refused with 503
	// when it is missing).
	Opus   *OpusLib
	Logger *slog.Logger
}

// Stats are a server's counters since it started.
type Stats struct {
	// Refused counts INVITEs turned away before a call started (challenge, credentials,
	// room, offer, overload); Challenged those of them answered 401.
	Refused, Challenged uint64
	// PacketsIn and BytesIn count Opus RTP packets made from callers' audio; Dropped those not
	// put on their media subject.
	PacketsIn, BytesIn, Dropped uint64
}

// Server is the SIP gateway. Close stops it and waits.
type Server struct {
	cfg     Config
	log     *slog.Logger
	ip      netip.Addr // the address in Contact and SDP
	port    int
	udp     net.PacketConn
	tcp     net.Listener
	ua      *sipgo.UserAgent
	srv     *sipgo.Server
	dialogs *sipgo.DialogServerCache
	dialer  *sipgo.DialogClientCache
	contact sip.ContactHeader
	digest  *Digest
	opus    *OpusLib
	opusErr error
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	// byes are the BYEs in flight; Close waits for them before it closes the transports.
	byes sync.WaitGroup

	mu     sync.Mutex
	calls  map[string]*call // by dialog id
	closed bool

	refused, challenged atomic.Uint64
	rtp                 rtc.RTPCounters
}

// Listen starts a gateway on cfg.Listen (UDP and TCP on the same port).
func Listen(cfg Config) (*Server, error) {
	if cfg.Sessions == nil || cfg.Bus == nil || cfg.Tracks == nil {
		return nil, errors.New("sip: Sessions, Bus and Tracks are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Speakers <= 0 {
		cfg.Speakers = 3
	}
	cfg.Speakers = min(cfg.Speakers, MaxMixInputs)
	realm := cfg.Domain
	if realm == "" {
		realm = "jetmedia"
	}
	dg, err := NewDigest(realm, cfg.Users)
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, log: cfg.Logger.With("component", events.TransportSIP), digest: dg, calls: map[string]*call{}}
	s.opus, s.opusErr = cfg.Opus, nil
	if s.opus == nil {
		s.opus, s.opusErr = LoadOpus("")
	}
	if err := s.listen(); err != nil {
		return nil, err
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	if err := s.startSIP(); err != nil {
		s.cancel()
		_ = s.udp.Close()
		_ = s.tcp.Close()
		return nil, err
	}
	s.log.Info("sip listening", "udp", s.udp.LocalAddr().String(), "tcp", s.tcp.Addr().String(),
		"uri", "sip:<room>@"+s.hostport(), "users", len(cfg.Users), "opus", s.opusErr == nil)
	if s.opusErr != nil {
		s.log.Error("sip calls will be refused (503): no Opus codec", "err", s.opusErr)
	}
	return s, nil
}

func (s *Server) listen() error {
	host, _, err := net.SplitHostPort(s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("sip listen %q: %w", s.cfg.Listen, err)
	}
	if err := s.bindPair(host); err != nil {
		return err
	}
	s.ip = netip.MustParseAddr("127.0.0.1")
	if a, err := netip.ParseAddr(host); err == nil && !a.IsUnspecified() {
		s.ip = a.Unmap()
	} else if a := outboundIP(); a.IsValid() {
		s.ip = a
	}
	return nil
}

// anyPortTries bounds how often a gateway asked for any port (":0") tries again when the UDP
// port the kernel picked is taken for TCP by another program.
const anyPortTries = 20

// bindPair binds the UDP socket and a TCP listener on the same port. With port 0 the kernel picks
// the UDP port, which may be in use for TCP: then it tries another port, up to anyPortTries.
func (s *Server) bindPair(host string) error {
	_, port, _ := net.SplitHostPort(s.cfg.Listen)
	tries := 1
	if port == "0" || port == "" {
		tries = anyPortTries
	}
	var err error
	for range tries {
		if s.udp, err = net.ListenPacket("udp", s.cfg.Listen); err != nil {
			return fmt.Errorf("sip listen udp %s: %w", s.cfg.Listen, err)
		}
		s.port = s.udp.LocalAddr().(*net.UDPAddr).Port
		tcpAddr := net.JoinHostPort(host, strconv.Itoa(s.port))
		if s.tcp, err = net.Listen("tcp", tcpAddr); err == nil {
			return nil
		}
		_ = s.udp.Close()
		err = fmt.Errorf("sip listen tcp %s: %w", tcpAddr, err)
		if !errors.Is(err, syscall.EADDRINUSE) {
			return err
		}
	}
	return err
}

// outboundIP is the address this machine uses toward the outside (no packet is sent), for a
// gateway listening on every interface.
func outboundIP() netip.Addr {
	c, err := net.Dial("udp4", "192.0.2.1:9")
	if err != nil {
		return netip.Addr{}
	}
	defer func() { _ = c.Close() }()
	ap, err := netip.ParseAddrPort(c.LocalAddr().String())
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr()
}

func (s *Server) hostport() string {
	if s.cfg.Domain != "" {
		return s.cfg.Domain
	}
	return net.JoinHostPort(s.ip.String(), strconv.Itoa(s.port))
}

func (s *Server) startSIP() error {
	// sipgo logs a datagram it cannot parse at ERROR with its bytes: a flood of junk would
	// flood the node's log. Its lines go to DEBUG; refusals are logged here.
	lib := slog.New(debugOnly{s.log.Handler()}).With("lib", "sipgo")
	ua, err := sipgo.NewUA(sipgo.WithUserAgent("jetmedia"), sipgo.WithUserAgentHostname(s.ip.String()),
		sipgo.WithUserAgentTransportLayerOptions(sip.WithTransportLayerLogger(lib)),
		sipgo.WithUserAgentTransactionLayerOptions(sip.WithTransactionLayerLogger(lib)))
	if err != nil {
		return fmt.Errorf("sip: %w", err)
	}
	srv, err := sipgo.NewServer(ua, sipgo.WithServerLogger(lib))
	if err != nil {
		_ = ua.Close()
		return fmt.Errorf("sip: %w", err)
	}
	client, err := sipgo.NewClient(ua, sipgo.WithClientHostname(s.ip.String()), sipgo.WithClientLogger(lib))
	if err != nil {
		_ = ua.Close()
		return fmt.Errorf("sip: %w", err)
	}
	s.ua, s.srv = ua, srv
	s.contact = sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: "jetmedia", Host: s.ip.String(), Port: s.port}}
	s.dialogs = sipgo.NewDialogServerCache(client, s.contact)
	s.dialer = sipgo.NewDialogClientCache(client, s.contact)
	srv.OnInvite(s.onInvite)
	srv.OnAck(func(req *sip.Request, tx sip.ServerTransaction) { _ = s.dialogs.ReadAck(req, tx) })
	srv.OnBye(s.onBye)
	srv.OnUpdate(s.onUpdate)
	srv.OnOptions(func(req *sip.Request, tx sip.ServerTransaction) {
		res := sip.NewResponseFromRequest(req, sip.StatusOK, "OK", nil)
		res.AppendHeader(sip.NewHeader("Allow", "INVITE, ACK, BYE, CANCEL, OPTIONS, UPDATE"))
		_ = tx.Respond(res)
	})
	s.wg.Add(2)
	go func() { defer s.wg.Done(); _ = srv.ServeUDP(s.udp) }()
	go func() { defer s.wg.Done(); _ = srv.ServeTCP(s.tcp) }()
	return nil
}

// Addr is the UDP (and TCP) address the gateway listens on.
func (s *Server) Addr() net.Addr { return s.udp.LocalAddr() }

// Stats returns the server's counters.
func (s *Server) Stats() Stats {
	return Stats{Refused: s.refused.Load(), Challenged: s.challenged.Load(), PacketsIn: s.rtp.Packets.Load(),
		BytesIn: s.rtp.Bytes.Load(), Dropped: s.rtp.Dropped.Load()}
}

// Close stops the listeners, ends calls still up (as disconnected: the node's registry
// closes first and ends them as shutdown with a BYE) and waits for every goroutine.
// Idempotent; a nil Server is a gateway that was never started.
func (s *Server) Close() error {
	if s == nil {
		return nil
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		s.wg.Wait()
		return nil
	}
	s.closed = true
	calls := make([]*call, 0, len(s.calls))
	for _, c := range s.calls {
		calls = append(calls, c)
	}
	s.mu.Unlock()
	for _, c := range calls {
		now := s.cfg.Sessions.Now()
		c.sess.Step(func(rtc.Core) Output { return c.core.Failed(now) })
		<-c.sess.Done()
	}
	s.byes.Wait()
	s.cancel()
	err := errors.Join(s.udp.Close(), s.tcp.Close())
	_ = s.ua.Close()
	s.wg.Wait()
	return err
}

// refuse answers a new INVITE with a final status and logs why; nothing is recorded.
func (s *Server) refuse(req *sip.Request, tx sip.ServerTransaction, code int, reason string, err error, hdrs ...sip.Header) {
	s.refused.Add(1)
	res := sip.NewResponseFromRequest(req, code, reason, nil)
	for _, h := range hdrs {
		res.AppendHeader(h)
	}
	_ = tx.Respond(res)
	lvl := slog.LevelWarn
	if code == sip.StatusUnauthorized {
		lvl = slog.LevelDebug // the first INVITE of every call is challenged
	}
	s.log.Log(context.Background(), lvl, "sip call refused", "status", code, "reason", reason,
		"from", req.From().Address.String(), "to", req.Recipient.String(), "remote", req.Source(), "err", err)
}

// onInvite takes a new call (or a re-INVITE of one).
func (s *Server) onInvite(req *sip.Request, tx sip.ServerTransaction) {
	if to := req.To(); to != nil {
		if _, ok := to.Params.Get("tag"); ok {
			s.reinvite(req, tx)
			return
		}
	}
	room, cred, offer, ok := s.admit(req, tx)
	if !ok {
		return
	}
	s.answer(req, tx, room, cred, offer)
}

// admit checks a new INVITE: room, credentials, offer, capacity. It answers refusals itself.
func (s *Server) admit(req *sip.Request, tx sip.ServerTransaction) (string, Credential, Offer, bool) {
	room := req.Recipient.User
	if d := s.cfg.Domain; d != "" && !strings.EqualFold(req.Recipient.Host, d) && req.Recipient.Host != s.ip.String() {
		s.refuse(req, tx, sip.StatusNotFound, "Not Found", fmt.Errorf("domain %q is not served here (%s)", req.Recipient.Host, d))
		return "", Credential{}, Offer{}, false
	}
	if !events.ValidID(room) {
		s.refuse(req, tx, sip.StatusNotFound, "Not Found", fmt.Errorf("%q is not a room id", room))
		return "", Credential{}, Offer{}, false
	}
	now := s.cfg.Sessions.Now()
	var authz string
	if h := req.GetHeader("Authorization"); h != nil {
		authz = h.Value()
	}
	cred, err := s.digest.Check(now, authz, string(req.Method), room)
	if err != nil {
		if errors.Is(err, ErrNoCredentials) || errors.Is(err, ErrStaleNonce) {
			s.challenged.Add(1)
			s.refuse(req, tx, sip.StatusUnauthorized, "Unauthorized", err,
				sip.NewHeader("WWW-Authenticate", s.digest.Challenge(now, errors.Is(err, ErrStaleNonce))))
		} else {
			s.refuse(req, tx, sip.StatusForbidden, "Forbidden", err)
		}
		return "", Credential{}, Offer{}, false
	}
	offer, err := ParseOffer(req.Body())
	if err != nil {
		s.refuse(req, tx, sip.StatusNotAcceptableHere, "Not Acceptable Here", err)
		return "", Credential{}, Offer{}, false
	}
	if s.opusErr != nil {
		s.refuse(req, tx, sip.StatusServiceUnavailable, "Service Unavailable", s.opusErr)
		return "", Credential{}, Offer{}, false
	}
	return room, cred, offer, true
}

// sessionExpires reads Session-Expires (RFC 4028 §4): 0 when absent; at least 90 s.
func sessionExpires(req *sip.Request) time.Duration {
	h := req.GetHeader("Session-Expires")
	if h == nil {
		if h = req.GetHeader("x"); h == nil { // its compact form
			return 0
		}
	}
	v, _, _ := strings.Cut(h.Value(), ";")
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil || n <= 0 {
		return 0
	}
	return time.Duration(max(n, 90)) * time.Second
}

// answer runs a new call: join, media, 200 OK, ACK.
func (s *Server) answer(req *sip.Request, tx sip.ServerTransaction, room string, cred Credential, offer Offer) {
	dlg, err := s.dialogs.ReadInvite(req, tx)
	if err != nil {
		s.refuse(req, tx, sip.StatusBadRequest, "Bad Request", err)
		return
	}
	_ = dlg.Respond(sip.StatusTrying, "Trying", nil)
	reg := s.cfg.Sessions
	peer := rtc.Peer{ID: events.NewID(), Node: reg.Node(), Identity: "sip:" + cred.User, Name: displayName(req)}
	core := NewCore(peer, s.cfg.Timers)
	conn, err := s.rtpSocket()
	var c *call
	if err == nil {
		c, err = s.newCall(conn, dlg, dlg.ID, room, core, offer)
	}
	if err != nil {
		s.refused.Add(1)
		_ = dlg.Respond(sip.StatusServiceUnavailable, "Service Unavailable", nil)
		_ = dlg.Close()
		s.log.Warn("sip call refused", "status", 503, "room", room, "err", err)
		return
	}
	se := sessionExpires(req)
	now := reg.Now()
	ua := ""
	if h := req.GetHeader("User-Agent"); h != nil {
		ua = h.Value()
	}
	if err := c.sess.StepWait(func(rtc.Core) Output {
		return core.Invited(now, req.Source(), ua, offer.Held(), se)
	}); err != nil {
		_ = dlg.Respond(sip.StatusServiceUnavailable, "Service Unavailable", nil)
		c.remoteEnded.Store(true) // refused with 503: there is no dialog to BYE
		c.sess.Step(func(rtc.Core) Output { return core.Shutdown(reg.Now()) })
		<-c.sess.Done()
		return
	}
	c.sess.Started("remote", req.Source(), "user_agent", ua, "law", offer.Law.String(), "dtmf", offer.DTMF >= 0,
		"session_expires", se.String())
	c.start()
	res := sip.NewSDPResponseFromRequest(dlg.InviteRequest, Answer(offer, c.local(), c.sdpID, c.sdpVersion.Add(1)))
	if se > 0 {
		res.AppendHeader(sip.NewHeader("Session-Expires", strconv.Itoa(int(se/time.Second))+";refresher=uac"))
		res.AppendHeader(sip.NewHeader("Require", "timer"))
	}
	res.AppendHeader(sip.NewHeader("Allow", "INVITE, ACK, BYE, CANCEL, OPTIONS, UPDATE"))
	if err := dlg.WriteResponse(res); err != nil {
		// CANCEL before the ACK, or no ACK within 64×T1: the caller is gone.
		c.sess.Log.Info("sip call not acknowledged", "err", err)
		c.remoteEnded.Store(true)
		c.sess.Step(func(rtc.Core) Output { return core.Bye(reg.Now()) })
		return
	}
	now = reg.Now()
	c.sess.Step(func(rtc.Core) Output { return core.Acked(now) })
}

func displayName(req *sip.Request) string {
	if f := req.From(); f != nil {
		if f.DisplayName != "" {
			return f.DisplayName
		}
		return f.Address.User
	}
	return ""
}

// lookup finds the call of an in-dialog request: one it answered (UAS) or dialled (UAC).
func (s *Server) lookup(req *sip.Request) *call {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, idOf := range []func(*sip.Request) (string, error){sip.DialogIDFromRequestUAS, sip.DialogIDFromRequestUAC} {
		if id, err := idOf(req); err == nil && s.calls[id] != nil {
			return s.calls[id]
		}
	}
	return nil
}

func (s *Server) onBye(req *sip.Request, tx sip.ServerTransaction) {
	c := s.lookup(req)
	if c == nil {
		_ = tx.Respond(sip.NewResponseFromRequest(req, sip.StatusCallTransactionDoesNotExists, "Call/Transaction Does Not Exist", nil))
		return
	}
	c.remoteEnded.Store(true)
	if err := c.dlg.ReadBye(req, tx); err != nil {
		_ = tx.Respond(sip.NewResponseFromRequest(req, sip.StatusCallTransactionDoesNotExists, "Call/Transaction Does Not Exist", nil))
	}
	now := s.cfg.Sessions.Now()
	c.sess.Step(func(rtc.Core) Output { return c.core.Bye(now) })
}

// reinvite answers a re-INVITE: hold, resume, a new address, or a session refresh.
func (s *Server) reinvite(req *sip.Request, tx sip.ServerTransaction) {
	c := s.lookup(req)
	if c == nil {
		_ = tx.Respond(sip.NewResponseFromRequest(req, sip.StatusCallTransactionDoesNotExists, "Call/Transaction Does Not Exist", nil))
		return
	}
	if err := c.dlg.ReadRequest(req, tx); err != nil {
		_ = tx.Respond(sip.NewResponseFromRequest(req, sip.StatusInternalServerError, "CSeq out of order", nil))
		return
	}
	offer := c.offer()
	if len(req.Body()) > 0 {
		o, err := ParseOffer(req.Body())
		if err != nil || o.Law != offer.Law {
			// The call goes on as it was (RFC 3261 §14.2).
			_ = tx.Respond(sip.NewResponseFromRequest(req, sip.StatusNotAcceptableHere, "Not Acceptable Here", nil))
			c.sess.Log.Info("sip re-INVITE refused: the call keeps its media", "err", err)
			return
		}
		offer = o
	} else {
		offer.Direction = SendRecv // an offerless re-INVITE: we offer, the ACK answers
	}
	c.setOffer(offer)
	se := sessionExpires(req)
	res := sip.NewSDPResponseFromRequest(req, Answer(offer, c.local(), c.sdpID, c.sdpVersion.Add(1)))
	contact := s.contact
	res.AppendHeader(&contact)
	if se > 0 {
		res.AppendHeader(sip.NewHeader("Session-Expires", strconv.Itoa(int(se/time.Second))+";refresher=uac"))
	}
	_ = tx.Respond(res)
	now := s.cfg.Sessions.Now()
	held := offer.Held()
	c.sess.Step(func(rtc.Core) Output { return c.core.Reinvited(now, held, se) })
	c.sess.Log.Info("sip re-INVITE", "held", held, "session_expires", se.String())
}

// onUpdate answers UPDATE (RFC 3311) without a body: a session refresh.
func (s *Server) onUpdate(req *sip.Request, tx sip.ServerTransaction) {
	c := s.lookup(req)
	if c == nil {
		_ = tx.Respond(sip.NewResponseFromRequest(req, sip.StatusCallTransactionDoesNotExists, "Call/Transaction Does Not Exist", nil))
		return
	}
	if len(req.Body()) > 0 {
		_ = tx.Respond(sip.NewResponseFromRequest(req, sip.StatusNotAcceptableHere, "Not Acceptable Here", nil))
		return
	}
	se := sessionExpires(req)
	res := sip.NewResponseFromRequest(req, sip.StatusOK, "OK", nil)
	if se > 0 {
		res.AppendHeader(sip.NewHeader("Session-Expires", strconv.Itoa(int(se/time.Second))+";refresher=uac"))
	}
	_ = tx.Respond(res)
	now := s.cfg.Sessions.Now()
	held := c.offer().Held()
	c.sess.Step(func(rtc.Core) Output { return c.core.Reinvited(now, held, se) })
}

// debugOnly logs every record at DEBUG.
type debugOnly struct{ h slog.Handler }

func (d debugOnly) Enabled(ctx context.Context, _ slog.Level) bool {
	return d.h.Enabled(ctx, slog.LevelDebug)
}

func (d debugOnly) Handle(ctx context.Context, r slog.Record) error {
	r.Level = slog.LevelDebug
	return d.h.Handle(ctx, r)
}

func (d debugOnly) WithAttrs(as []slog.Attr) slog.Handler { return debugOnly{d.h.WithAttrs(as)} }
func (d debugOnly) WithGroup(g string) slog.Handler       { return debugOnly{d.h.WithGroup(g)} }
