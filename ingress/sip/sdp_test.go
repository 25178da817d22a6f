package sip

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// baresipOffer is what baresip 1.0 (Debian 12) offers with the g711 module.
const baresipOffer = "v=0\r\no=- 1234 5678 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n" +
	"m=audio 10000 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n" +
	"a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=sendrecv\r\na=label:1\r\na=ssrc:1 cname:x\r\n"

func TestParseOffer(t *testing.T) {
	tests := []struct {
		name string
		sdp  string
		want Offer
		err  bool
	}{
		{"baresip", baresipOffer, Offer{Addr: netip.MustParseAddrPort("127.0.0.1:10000"), Law: PCMU, DTMF: 101, Direction: SendRecv, PTime: 20}, false},
		{"PCMA first", strings.Replace(baresipOffer, "RTP/AVP 0 8 101", "RTP/AVP 8 0", 1), Offer{Addr: netip.MustParseAddrPort("127.0.0.1:10000"), Law: PCMA, DTMF: -1, Direction: SendRecv, PTime: 20}, false},
		{"hold", strings.Replace(baresipOffer, "sendrecv", "sendonly", 1), Offer{Addr: netip.MustParseAddrPort("127.0.0.1:10000"), Law: PCMU, DTMF: 101, Direction: SendOnly, PTime: 20}, false},
		{"opus only", strings.Replace(baresipOffer, "RTP/AVP 0 8 101", "RTP/AVP 96", 1), Offer{}, true},
		{"srtp", strings.Replace(baresipOffer, "RTP/AVP", "RTP/SAVP", 1), Offer{}, true},
		{"host name", strings.Replace(baresipOffer, "c=IN IP4 127.0.0.1", "c=IN IP4 pbx.example", 1), Offer{}, true},
		{"garbage", "hello", Offer{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseOffer([]byte(tt.sdp))
			if tt.err {
				require.Error(t, err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
		})
	}
	held, _ := ParseOffer([]byte(strings.Replace(baresipOffer, "sendrecv", "inactive", 1)))
	require.True(t, held.Held())
}

func TestAnswerMirrorsDirection(t *testing.T) {
	o, err := ParseOffer([]byte(strings.Replace(baresipOffer, "sendrecv", "sendonly", 1)))
	require.NoError(t, err)
	a := string(Answer(o, netip.MustParseAddrPort("127.0.0.1:5004"), 7, 2))
	require.Contains(t, a, "m=audio 5004 RTP/AVP 0 101\r\n")
	require.Contains(t, a, "a=recvonly\r\n")
	back, err := ParseOffer([]byte(a))
	require.NoError(t, err, "our answer is valid SDP:\n%s", a)
	require.Equal(t, 101, back.DTMF)
}

func TestDTMFDetector(t *testing.T) {
	var d DTMFDetector
	_, ok := d.Packet(100, []byte{5, 0x0a, 0, 160})
	require.False(t, ok, "no press before the end")
	p, ok := d.Packet(100, []byte{5, 0x8a, 0x03, 0x20})
	require.True(t, ok)
	require.Equal(t, Press{Digit: "5", DurationMS: 100}, p)
	_, ok = d.Packet(100, []byte{5, 0x8a, 0x03, 0x20})
	require.False(t, ok, "the end's retransmissions are one press")
	p, ok = d.Packet(900, []byte{11, 0x80, 0, 0})
	require.True(t, ok)
	require.Equal(t, "#", p.Digit)
	_, ok = d.Packet(1900, []byte{16, 0x80, 0, 0})
	require.False(t, ok, "event 16 (flash) is not a key")
}
