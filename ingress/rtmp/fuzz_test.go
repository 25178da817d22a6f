package rtmp_test

import (
	"net/url"
	"testing"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/pion/rtp"

	"github.com/jetmedia/jetmedia/events"
	"github.com/jetmedia/jetmedia/ingress/rtmp"
)

// FuzzParseStreamURL: any URL a publisher sends either names a valid room and a token or
// is refused; never a panic. Seeds in testdata/fuzz/FuzzParseStreamURL.
func FuzzParseStreamURL(f *testing.F) {
	f.Add("rtmp://h:1935/live/room?token=a.b.c")
	f.Add("rtmp://h/live/room/a.b.c")
	f.Fuzz(func(t *testing.T, s string) {
		u, err := url.Parse(s)
		if err != nil {
			return
		}
		room, token, err := rtmp.ParseStreamURL(u)
		if err != nil {
			return
		}
		if !events.ValidID(room) || token == "" {
			t.Fatalf("accepted room %q token %q from %q", room, token, s)
		}
	})
}

// FuzzPacketize: any FLV video payload (AVCC: length-prefixed NAL units) becomes well-formed
// RTP packets no bigger than the MTU, or nothing; never a panic. Seeds in
// testdata/fuzz/FuzzPacketize.
func FuzzPacketize(f *testing.F) {
	f.Add([]byte{0, 0, 0, 4, 0x65, 1, 2, 3}, int64(0))
	f.Add([]byte{0, 0, 0, 2, 0x09, 0xf0, 0, 0, 0, 3, 0x41, 9, 9}, int64(33e6))
	f.Fuzz(func(t *testing.T, avcc []byte, pts int64) {
		var au h264.AVCC
		if au.Unmarshal(avcc) != nil {
			return
		}
		p := rtmp.NewPacketizer([]byte{0x67, 0x42, 0xc0, 0x1e}, []byte{0x68, 0xce}, 1, 2, 3)
		pkts, _ := p.Packetize(time.Duration(pts), au)
		for _, b := range pkts {
			var pkt rtp.Packet
			if err := pkt.Unmarshal(b); err != nil {
				t.Fatalf("packet does not parse: %v", err)
			}
			if len(pkt.Payload) > 1200 || len(pkt.Payload) == 0 {
				t.Fatalf("payload of %d bytes", len(pkt.Payload))
			}
		}
	})
}
