package forward_test

import (
	"testing"

	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"
	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/egress/forward"
)

// srtpPair is the node's sending context for one viewer and the viewer's receiving one, keyed
// alike (what DTLS would have agreed).
func srtpPair(t *testing.T) (send, recv *srtp.Context) {
	t.Helper()
	key := []byte("0123456789abcdef")
	salt := []byte("saltsaltsaltsa")
	send, err := srtp.CreateContext(key, salt, srtp.ProtectionProfileAes128CmHmacSha1_80)
	require.NoError(t, err)
	recv, err = srtp.CreateContext(key, salt, srtp.ProtectionProfileAes128CmHmacSha1_80)
	require.NoError(t, err)
	return send, recv
}

// decryptsAfterLosingTheStart sends 300 packets of a source whose numbers start 100 before the
// wrap through rewrite and the node's SRTP context, loses the first 150 on the way (the
// wrap among them: dropped before the viewer's DTLS was up, or lost), and reports how many of
// the rest the viewer decrypts.
func decryptsAfterLosingTheStart(t *testing.T, rewrite func([]byte) []byte) int {
	send, recv := srtpPair(t)
	ok := 0
	for i := range 300 {
		p := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: uint16(65436 + i), Timestamp: uint32(i) * 3000, SSRC: 1},
			Payload: []byte("payload of a frame")}
		raw, err := p.Marshal()
		require.NoError(t, err)
		enc, err := send.EncryptRTP(nil, rewrite(raw), nil)
		require.NoError(t, err)
		if i < 150 {
			continue
		}
		if _, err := recv.DecryptRTP(nil, enc, nil); err == nil {
			ok++
		}
	}
	return ok
}

// A viewer that misses the first packets of its stream still decrypts the rest: its stream
// starts below 2^15, so no wrap happens before any packet it can have missed. The control
// (numbers passed through unchanged) shows the failure this prevents: the viewer guesses the
// rollover counter one short and decrypts nothing.
func TestRewrittenStreamSurvivesLostStartAcrossWrap(t *testing.T) {
	rw := forward.Rewriter{SSRC: 9, PayloadType: 96}
	got := decryptsAfterLosingTheStart(t, func(b []byte) []byte {
		require.True(t, rw.Rewrite(b))
		return b
	})
	require.Equal(t, 150, got, "every packet after the lost start decrypts")

	control := decryptsAfterLosingTheStart(t, func(b []byte) []byte { return b })
	require.Zero(t, control, "with the source's numbers the viewer's rollover guess is wrong")
}
