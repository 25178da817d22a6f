package sip

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/jetmedia/jetmedia/events"
	"github.com/jetmedia/jetmedia/pipeline/rtc"
)

// ErrBadURI: a dial target that is not a sip: URI with a host.
var ErrBadURI = errors.New("sip: want a sip: URI with a host, e.g. sip:bob@pbx.example.com:5060")

// dialTimeout bounds a dial: ringing, answer and ACK.
const dialTimeout = 60 * time.Second

// offer is the gateway's SDP offer for an outbound call: PCMU, PCMA and telephone-event.
func offer(local netip.AddrPort, sessionID uint64) []byte {
	ip := "IP4"
	if local.Addr().Is6() {
		ip = "IP6"
	}
	return fmt.Appendf(nil, "v=0\r\no=jetmedia %d 1 IN %s %s\r\ns=jetmedia\r\nc=IN %s %s\r\nt=0 0\r\n"+
		"m=audio %d RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"+
		"a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=ptime:20\r\na=sendrecv\r\n",
		sessionID, ip, local.Addr(), ip, local.Addr(), local.Port())
}

// Dial invites uri into room and returns the new peer's id once the callee has answered. The
// callee is a peer like an inbound caller (identity sip:<user>@<host>); its hang-up ends it.
func (s *Server) Dial(ctx context.Context, room, uri string) (string, error) {
	var target sip.Uri
	if err := sip.ParseUri(uri, &target); err != nil || target.Scheme != "sip" || target.Host == "" {
		return "", fmt.Errorf("%w: %q", ErrBadURI, uri)
	}
	if s.opusErr != nil {
		return "", s.opusErr
	}
	conn, err := s.rtpSocket()
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(ctx, dialTimeout)
	defer cancel()
	local := netip.AddrPortFrom(s.ip, conn.LocalAddr().(*net.UDPAddr).AddrPort().Port())
	dt, err := s.dialer.Invite(ctx, target, offer(local, uint64(time.Now().UnixNano())>>1),
		sip.NewHeader("Content-Type", "application/sdp"))
	if err != nil {
		_ = conn.Close()
		return "", fmt.Errorf("sip: invite %s: %w", uri, err)
	}
	if err := dt.WaitAnswer(ctx, sipgo.AnswerOptions{}); err != nil {
		_ = conn.Close()
		_ = dt.Close()
		return "", fmt.Errorf("sip: %s did not answer: %w", uri, err)
	}
	ans, err := ParseOffer(dt.InviteResponse.Body())
	if err == nil {
		err = dt.Ack(ctx)
	}
	if err != nil {
		_ = conn.Close()
		_ = dt.Bye(ctx)
		_ = dt.Close()
		return "", fmt.Errorf("sip: %s answered unusably: %w", uri, err)
	}
	return s.dialled(conn, dt, room, target, ans)
}

// dialled runs an answered outbound call like an inbound one.
func (s *Server) dialled(conn *net.UDPConn, dt *sipgo.DialogClientSession, room string, target sip.Uri, ans Offer) (string, error) {
	reg := s.cfg.Sessions
	who := target.User + "@" + target.Host
	peer := rtc.Peer{ID: events.NewID(), Node: reg.Node(), Identity: "sip:" + who, Name: target.User}
	core := NewCore(peer, s.cfg.Timers)
	c, err := s.newCall(conn, dt, dt.ID, room, core, ans)
	if err != nil {
		_ = dt.Bye(context.Background())
		return "", err
	}
	now := reg.Now()
	ua := ""
	if h := dt.InviteResponse.GetHeader("Server"); h != nil {
		ua = h.Value()
	} else if h := dt.InviteResponse.GetHeader("User-Agent"); h != nil {
		ua = h.Value()
	}
	if err := c.sess.StepWait(func(rtc.Core) Output {
		out := core.Invited(now, ans.Addr.String(), ua, ans.Held(), 0)
		core.Acked(now)
		return out
	}); err != nil {
		c.sess.Step(func(rtc.Core) Output { return core.Shutdown(reg.Now()) })
		<-c.sess.Done()
		return "", err
	}
	c.sess.Started("dialled", target.String(), "user_agent", ua, "law", ans.Law.String(), "dtmf", ans.DTMF >= 0)
	c.start()
	return peer.ID, nil
}

// DialAPI serves POST /v1/rooms/{room}/sip/dial: {"uri":"sip:bob@pbx.example.com"} invites
// that URI into the room and answers 201 {"peer":"<id>"} once it has answered.
type DialAPI struct {
	Server *Server
	// Authorize writes the error and returns false unless the request carries an admin token
	// for room (the node's check, as for the rooms API).
	Authorize func(w http.ResponseWriter, r *http.Request, room string) bool
	Logger    *slog.Logger
}

// Register adds the endpoint to mux.
func (a DialAPI) Register(mux *http.ServeMux) {
	mux.HandleFunc("POST /v1/rooms/{room}/sip/dial", a.dial)
}

func (a DialAPI) dial(w http.ResponseWriter, r *http.Request) {
	room, ok := rtc.RoomFromPath(w, r, a.Logger)
	if !ok {
		return
	}
	if !a.Authorize(w, r, room) {
		return
	}
	if a.Server == nil {
		rtc.WriteError(w, r, a.Logger, rtc.Errorf(http.StatusNotFound, "the SIP gateway is off (--sip-listen)"))
		return
	}
	var body struct {
		URI string `json:"uri"`
	}
	dec := json.NewDecoder(io.LimitReader(r.Body, 4096))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil || body.URI == "" {
		rtc.WriteError(w, r, a.Logger, rtc.Errorf(http.StatusBadRequest, `body must be {"uri":"sip:user@host"}: %v`, err))
		return
	}
	peer, err := a.Server.Dial(r.Context(), room, body.URI)
	switch {
	case errors.Is(err, ErrBadURI):
		rtc.WriteError(w, r, a.Logger, rtc.Errorf(http.StatusBadRequest, "%v", err))
		return
	case err != nil && strings.Contains(err.Error(), "did not answer"):
		rtc.WriteError(w, r, a.Logger, rtc.Errorf(http.StatusBadGateway, "%v", err))
		return
	case err != nil:
		rtc.WriteError(w, r, a.Logger, rtc.Errorf(http.StatusServiceUnavailable, "%v", err))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusCreated)
	_ = json.NewEncoder(w).Encode(map[string]string{"peer": peer})
}
