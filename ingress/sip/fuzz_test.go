package sip

import (
	"net/netip"
	"testing"
)

// FuzzParseOffer: any body either parses into an offer whose answer can be built, or is an
// error; never a panic.
func FuzzParseOffer(f *testing.F) {
	f.Add([]byte(baresipOffer))
	f.Add([]byte("v=0\r\nm=audio 0 RTP/AVP 0\r\n"))
	f.Add([]byte("v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\nm=audio 4000 RTP/AVP 8 101\r\na=rtpmap:101 telephone-event/8000\r\na=inactive\r\n"))
	f.Fuzz(func(t *testing.T, body []byte) {
		o, err := ParseOffer(body)
		if err != nil {
			return
		}
		if o.Law != PCMU && o.Law != PCMA {
			t.Fatalf("law %d", o.Law)
		}
		_ = Answer(o, netip.MustParseAddrPort("127.0.0.1:5004"), 1, 1)
	})
}

// FuzzDTMF: any telephone-event payload is a press or nothing; never a panic, and a press is
// always a key.
func FuzzDTMF(f *testing.F) {
	f.Add(uint32(1), []byte{5, 0x8a, 0x03, 0x20})
	f.Add(uint32(2), []byte{16, 0x80, 0, 0})
	f.Add(uint32(3), []byte{1})
	f.Fuzz(func(t *testing.T, ts uint32, p []byte) {
		var d DTMFDetector
		if pr, ok := d.Packet(ts, p); ok && (len(pr.Digit) != 1 || pr.DurationMS < 0 || pr.DurationMS > 8192) {
			t.Fatalf("press %+v", pr)
		}
	})
}
