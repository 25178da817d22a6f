package loadgen

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/pion/sdp/v3"
)

// The lite viewer's offer and the parts of the answer it needs. Everything here is pure:
// text in, values out.

// Payload types the lite viewer offers; the answer's rtpmap says which the server chose.
const (
	litePTVP8  = 96
	litePTOpus = 111
)

// liteOffer is what goes into a lite viewer's SDP offer.
type liteOffer struct {
	ufrag, pwd  string
	fingerprint string // sha-256, upper-case hex pairs joined by ':'
	cand        netip.AddrPort
	audio       bool
	// twcc offers transport-wide sequence numbers and feedback (transport-cc), as browsers
	// do, so the server's bandwidth estimator runs for the viewer.
	twcc      bool
	sessionID uint64
}

// twccURI is the RTP header extension of transport-wide sequence numbers.
const twccURI = "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01"

// liteTWCCID is the extension id the lite viewer offers for twccURI.
const liteTWCCID = 3

// sdp is the offer's text: BUNDLEd receive-only VP8 video (NACK, PLI, and with twcc
// transport-cc) and, with audio, Opus, over one host candidate, no trickle.
func (o liteOffer) sdp() string {
	var b strings.Builder
	mids := "0"
	if o.audio {
		mids = "0 1"
	}
	fmt.Fprintf(&b, "v=0\r\no=- %d 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE %s\r\n", o.sessionID, mids)
	media := func(kind, mid string, pt int, rtpmap, fmtp string, fb []string) {
		fmt.Fprintf(&b, "m=%s 9 UDP/TLS/RTP/SAVPF %d\r\nc=IN IP4 0.0.0.0\r\n", kind, pt)
		fmt.Fprintf(&b, "a=mid:%s\r\na=ice-ufrag:%s\r\na=ice-pwd:%s\r\na=fingerprint:sha-256 %s\r\na=setup:actpass\r\n", mid, o.ufrag, o.pwd, o.fingerprint)
		fmt.Fprintf(&b, "a=rtcp-mux\r\na=recvonly\r\na=rtpmap:%d %s\r\n", pt, rtpmap)
		if fmtp != "" {
			fmt.Fprintf(&b, "a=fmtp:%d %s\r\n", pt, fmtp)
		}
		for _, f := range fb {
			fmt.Fprintf(&b, "a=rtcp-fb:%d %s\r\n", pt, f)
		}
		if o.twcc {
			fmt.Fprintf(&b, "a=extmap:%d %s\r\na=rtcp-fb:%d transport-cc\r\n", liteTWCCID, twccURI, pt)
		}
		fmt.Fprintf(&b, "a=candidate:1 1 udp 2130706431 %s %d typ host\r\na=end-of-candidates\r\n", o.cand.Addr(), o.cand.Port())
	}
	media("video", "0", litePTVP8, "VP8/90000", "", []string{"nack", "nack pli"})
	if o.audio {
		media("audio", "1", litePTOpus, "opus/48000/2", "minptime=10;useinbandfec=1", nil)
	}
	return b.String()
}

// certFingerprint is the SDP form of a DER certificate's sha-256 fingerprint.
func certFingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	var b strings.Builder
	for i, c := range sum {
		if i > 0 {
			b.WriteByte(':')
		}
		fmt.Fprintf(&b, "%02X", c)
	}
	return b.String()
}

// liteAnswer is what the lite viewer takes from the server's answer.
type liteAnswer struct {
	ufrag, pwd  string
	fingerprint string // sha-256, as the answer wrote it
	// dtlsClient: the server's setup is passive, so this side starts the DTLS handshake.
	dtlsClient bool
	cands      []netip.AddrPort // UDP IPv4 host candidates, in the answer's order
	// SSRCs (0: not announced) and payload types (-1: not accepted) of the tracks.
	videoSSRC, audioSSRC uint32
	videoPT, audioPT     int
	// twccID is the id of the transport-wide sequence number extension the server took
	// (0: none).
	twccID uint8
}

var errBadAnswer = errors.New("load: unusable WHEP answer")

// parseLiteAnswer reads an answer to a liteOffer.
func parseLiteAnswer(text string) (*liteAnswer, error) {
	var sd sdp.SessionDescription
	if err := sd.UnmarshalString(text); err != nil {
		return nil, fmt.Errorf("%w: %v", errBadAnswer, err)
	}
	a := &liteAnswer{videoPT: -1, audioPT: -1}
	setup := ""
	a.takeTransport(sd.Attributes, &setup)
	for _, md := range sd.MediaDescriptions {
		a.takeTransport(md.Attributes, &setup)
		if md.MediaName.Port.Value == 0 {
			continue // rejected
		}
		ssrc, pt := mediaSSRCAndPT(md)
		switch md.MediaName.Media {
		case "video":
			a.videoSSRC, a.videoPT = ssrc, pt
		case "audio":
			a.audioSSRC, a.audioPT = ssrc, pt
		}
	}
	return a.check(setup)
}

// takeTransport reads the ICE credentials, the DTLS fingerprint and role, and the host
// candidates from session- or media-level attributes.
func (a *liteAnswer) takeTransport(attrs []sdp.Attribute, setup *string) {
	for _, at := range attrs {
		switch at.Key {
		case "ice-ufrag":
			a.ufrag = at.Value
		case "ice-pwd":
			a.pwd = at.Value
		case "fingerprint":
			if alg, fp, ok := strings.Cut(at.Value, " "); ok && strings.EqualFold(alg, "sha-256") {
				a.fingerprint = strings.TrimSpace(fp)
			}
		case "setup":
			*setup = at.Value
		case "candidate":
			if c, ok := parseHostCandidate(at.Value); ok && !containsAddrPort(a.cands, c) {
				a.cands = append(a.cands, c)
			}
		case "extmap":
			if id, ok := parseExtmap(at.Value, twccURI); ok {
				a.twccID = id
			}
		}
	}
}

// mediaSSRCAndPT is a media section's first announced SSRC (0: none) and the payload type
// of the codec the lite viewer takes (VP8 video, Opus audio; -1: not accepted).
func mediaSSRCAndPT(md *sdp.MediaDescription) (uint32, int) {
	ssrc, pt := uint32(0), -1
	for _, at := range md.Attributes {
		switch at.Key {
		case "ssrc":
			if ssrc == 0 {
				num, _, _ := strings.Cut(at.Value, " ")
				if v, err := strconv.ParseUint(num, 10, 32); err == nil {
					ssrc = uint32(v)
				}
			}
		case "rtpmap":
			if pt < 0 {
				pt = acceptedPT(md.MediaName.Media, at.Value)
			}
		}
	}
	return ssrc, pt
}

// acceptedPT is the payload type of an rtpmap value the lite viewer takes, or -1.
func acceptedPT(media, rtpmap string) int {
	num, codec, _ := strings.Cut(rtpmap, " ")
	v, err := strconv.Atoi(num)
	if err != nil {
		return -1
	}
	if media == "video" && strings.HasPrefix(strings.ToUpper(codec), "VP8/") ||
		media == "audio" && strings.HasPrefix(strings.ToLower(codec), "opus/") {
		return v
	}
	return -1
}

// check reports everything the answer lacks for a lite viewer at once.
func (a *liteAnswer) check(setup string) (*liteAnswer, error) {
	var errs []error
	if a.ufrag == "" || a.pwd == "" {
		errs = append(errs, errors.New("no ice-ufrag/ice-pwd"))
	}
	if a.fingerprint == "" {
		errs = append(errs, errors.New("no sha-256 fingerprint"))
	}
	switch setup {
	case "active":
	case "passive":
		a.dtlsClient = true
	default:
		errs = append(errs, fmt.Errorf("setup %q: want active or passive", setup))
	}
	if len(a.cands) == 0 {
		errs = append(errs, errors.New("no UDP IPv4 host candidate"))
	}
	if a.videoPT < 0 {
		errs = append(errs, errors.New("video (VP8) not accepted"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("%w: %v", errBadAnswer, err)
	}
	return a, nil
}

// parseExtmap is the id of an a=extmap value ("<id>[/<direction>] <uri> ...") naming uri;
// ids 1-14, the one-byte header form's.
func parseExtmap(v, uri string) (uint8, bool) {
	f := strings.Fields(v)
	if len(f) < 2 || f[1] != uri {
		return 0, false
	}
	num, _, _ := strings.Cut(f[0], "/")
	id, err := strconv.ParseUint(num, 10, 8)
	if err != nil || id < 1 || id > 14 {
		return 0, false
	}
	return uint8(id), true
}

// parseHostCandidate reads an a=candidate value: component 1, UDP, IPv4, type host.
func parseHostCandidate(v string) (netip.AddrPort, bool) {
	f := strings.Fields(v)
	if len(f) < 8 || f[1] != "1" || !strings.EqualFold(f[2], "udp") || f[6] != "typ" || f[7] != "host" {
		return netip.AddrPort{}, false
	}
	ip, err := netip.ParseAddr(f[4])
	if err != nil || !ip.Is4() {
		return netip.AddrPort{}, false
	}
	port, err := strconv.ParseUint(f[5], 10, 16)
	if err != nil || port == 0 {
		return netip.AddrPort{}, false
	}
	return netip.AddrPortFrom(ip, uint16(port)), true
}

func containsAddrPort(s []netip.AddrPort, a netip.AddrPort) bool {
	for _, x := range s {
		if x == a {
			return true
		}
	}
	return false
}

// pickCandidate chooses the server candidate to check: a loopback one when the run is on
// loopback, else the one on the URL's host, else the first.
func (a *liteAnswer) pickCandidate(loopback bool, host netip.Addr) netip.AddrPort {
	for _, c := range a.cands {
		if loopback && c.Addr().IsLoopback() || !loopback && host.IsValid() && c.Addr() == host {
			return c
		}
	}
	return a.cands[0]
}

// fingerprintEqual compares two SDP fingerprints (hex pairs, any case).
func fingerprintEqual(a, b string) bool {
	return strings.EqualFold(strings.TrimSpace(a), strings.TrimSpace(b))
}
