package sip

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/pion/sdp/v3"
)

// MaxSDP bounds an offer's size: a phone's audio offer is a few hundred bytes.
const MaxSDP = 16 << 10

// Direction is an SDP media direction (RFC 3264 §5.1).
type Direction string

// The media directions.
const (
	SendRecv Direction = "sendrecv"
	SendOnly Direction = "sendonly"
	RecvOnly Direction = "recvonly"
	Inactive Direction = "inactive"
)

// Offer is what the gateway takes from a caller's SDP: where to send its RTP, which G.711 law,
// the telephone-event payload type and the direction.
type Offer struct {
	// Addr is the caller's RTP address (the media or session c= line and the m= port).
	Addr netip.AddrPort
	Law  Law
	// DTMF is the telephone-event/8000 payload type, -1 when the caller offers none.
	DTMF int
	// Direction is the caller's side: sendonly or inactive (or a 0.0.0.0 address, RFC 2543
	// style) put the call on hold.
	Direction Direction
	// PTime is the caller's packet duration in ms (20 when not said).
	PTime int
}

// Held reports whether the offer puts the call on hold: the caller sends no media it wants
// answered.
func (o Offer) Held() bool {
	return o.Direction == SendOnly || o.Direction == Inactive || o.Addr.Addr().IsUnspecified()
}

// ErrNotAcceptable: the offer has no audio the gateway can take (488 Not Acceptable Here).
var ErrNotAcceptable = errors.New("sip: no acceptable audio in the offer (want RTP/AVP with PCMU or PCMA)")

// ParseOffer reads an SDP offer. Any failure is ErrNotAcceptable or a parse error; it never
// panics on input (FuzzParseOffer).
func ParseOffer(body []byte) (Offer, error) {
	if len(body) == 0 || len(body) > MaxSDP {
		return Offer{}, fmt.Errorf("%w: body of %d bytes", ErrNotAcceptable, len(body))
	}
	var sd sdp.SessionDescription
	if err := sd.Unmarshal(body); err != nil {
		return Offer{}, fmt.Errorf("%w: %w", ErrNotAcceptable, err)
	}
	for _, m := range sd.MediaDescriptions {
		if m.MediaName.Media != "audio" || m.MediaName.Port.Value == 0 || !hasProto(m.MediaName.Protos, "RTP", "AVP") {
			continue
		}
		o, ok := pickCodecs(m)
		if !ok {
			continue
		}
		c := m.ConnectionInformation
		if c == nil {
			c = sd.ConnectionInformation
		}
		if c == nil || c.Address == nil {
			return Offer{}, fmt.Errorf("%w: no connection address", ErrNotAcceptable)
		}
		ip, err := netip.ParseAddr(strings.SplitN(c.Address.Address, "/", 2)[0])
		if err != nil {
			return Offer{}, fmt.Errorf("%w: connection address %q (host names are not resolved)", ErrNotAcceptable, c.Address.Address)
		}
		port := m.MediaName.Port.Value
		if port <= 0 || port > 65535 {
			return Offer{}, fmt.Errorf("%w: port %d", ErrNotAcceptable, port)
		}
		o.Addr = netip.AddrPortFrom(ip.Unmap(), uint16(port))
		o.Direction = direction(m.Attributes, sd.Attributes)
		return o, nil
	}
	return Offer{}, ErrNotAcceptable
}

// hasProto: exactly RTP/AVP (plain RTP; SRTP and WebRTC profiles are not taken).
func hasProto(protos []string, want ...string) bool {
	return strings.Join(protos, "/") == strings.Join(want, "/")
}

// pickCodecs chooses PCMU or PCMA (whichever the caller lists first) and the
// telephone-event payload type.
func pickCodecs(m *sdp.MediaDescription) (Offer, bool) {
	o := Offer{DTMF: -1, PTime: 20}
	maps := rtpmaps(m, &o)
	found := false
	for _, f := range m.MediaName.Formats {
		pt, err := strconv.Atoi(f)
		if err != nil || pt < 0 || pt > 127 {
			continue
		}
		enc, mapped := maps[pt]
		switch {
		case !found && pt == int(PCMU) && (!mapped || enc == "pcmu/8000"):
			o.Law, found = PCMU, true
		case !found && pt == int(PCMA) && (!mapped || enc == "pcma/8000"):
			o.Law, found = PCMA, true
		case o.DTMF < 0 && enc == "telephone-event/8000":
			o.DTMF = pt
		}
	}
	return o, found
}

// rtpmaps reads the media's rtpmap lines (payload type → lower-case encoding/rate) and its
// ptime into o.
func rtpmaps(m *sdp.MediaDescription, o *Offer) map[int]string {
	maps := map[int]string{}
	for _, a := range m.Attributes {
		switch a.Key {
		case "rtpmap":
			pt, enc, ok := strings.Cut(a.Value, " ")
			n, err := strconv.Atoi(pt)
			if ok && err == nil && n >= 0 && n < 128 {
				maps[n] = strings.ToLower(enc)
			}
		case "ptime":
			if n, err := strconv.Atoi(strings.TrimSpace(a.Value)); err == nil && n >= 10 && n <= 60 && n%10 == 0 {
				o.PTime = n
			}
		}
	}
	return maps
}

func direction(media, session []sdp.Attribute) Direction {
	for _, attrs := range [][]sdp.Attribute{media, session} {
		for _, a := range attrs {
			switch d := Direction(a.Key); d {
			case SendRecv, SendOnly, RecvOnly, Inactive:
				return d
			}
		}
	}
	return SendRecv
}

// Answer is the gateway's SDP for an offer: its RTP address, the chosen law, telephone-event
// when offered, and the direction that mirrors the caller's (RFC 3264 §6.1).
func Answer(o Offer, local netip.AddrPort, sessionID, version uint64) []byte {
	ip4 := "IP4"
	if local.Addr().Is6() {
		ip4 = "IP6"
	}
	dir := SendRecv
	switch o.Direction {
	case SendOnly:
		dir = RecvOnly
	case RecvOnly:
		dir = SendOnly
	case Inactive:
		dir = Inactive
	}
	if o.Addr.Addr().IsUnspecified() {
		dir = Inactive
	}
	var b strings.Builder
	fmt.Fprintf(&b, "v=0\r\no=jetmedia %d %d IN %s %s\r\ns=jetmedia\r\nc=IN %s %s\r\nt=0 0\r\n",
		sessionID, version, ip4, local.Addr(), ip4, local.Addr())
	fmts := strconv.Itoa(int(o.Law))
	if o.DTMF >= 0 {
		fmts += " " + strconv.Itoa(o.DTMF)
	}
	fmt.Fprintf(&b, "m=audio %d RTP/AVP %s\r\na=rtpmap:%d %s/8000\r\n", local.Port(), fmts, o.Law, o.Law)
	if o.DTMF >= 0 {
		fmt.Fprintf(&b, "a=rtpmap:%d telephone-event/8000\r\na=fmtp:%d 0-15\r\n", o.DTMF, o.DTMF)
	}
	fmt.Fprintf(&b, "a=ptime:20\r\na=%s\r\n", dir)
	return []byte(b.String())
}
