package rtc

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/webrtc/v4"
)

// CodecReader is what PeekCodec reads from: a remote track with a read deadline.
type CodecReader interface {
	RTPReader
	Codec() webrtc.RTPCodecParameters
	PayloadType() webrtc.PayloadType
	SetReadDeadline(time.Time) error
}

// peekMax bounds the packets PeekCodec keeps while it looks for one that names the codec.
const peekMax = 32

// PeekCodec reads src until pion has named the codec from a packet's payload type (waiting at
// most wait), and returns that codec and a reader that yields the packets read before the rest
// of src. pion fires OnTrack for a simulcast layer before it has read one of the layer's
// packets and names the layer's codec after the transceiver's first negotiated codec until
// then; when the node made the offer, that is the node's first codec (VP8), not necessarily
// the one the client sends in (Chromium answering with H.264 preferred sends H.264). A read
// that fails (padding with an unknown payload type) or a repaired packet does not name it.
// When nothing names it within wait the codec is what pion says.
func PeekCodec(src CodecReader, wait time.Duration) (webrtc.RTPCodecParameters, RTPReader) {
	if err := src.SetReadDeadline(time.Now().Add(wait)); err != nil {
		return src.Codec(), src
	}
	defer func() { _ = src.SetReadDeadline(time.Time{}) }()
	r := &replayReader{src: src}
	buf := make([]byte, 1500)
	// Every read counts, so a closed source (each read failing at once) ends the loop too.
	for range peekMax {
		n, attrs, err := src.Read(buf)
		if isTimeout(err) {
			break
		}
		if err == nil {
			r.held = append(r.held, heldPacket{data: append([]byte(nil), buf[:n]...), attrs: attrs})
		}
		if src.PayloadType() != 0 {
			break
		}
	}
	return src.Codec(), r
}

func isTimeout(err error) bool {
	var t interface{ Timeout() bool }
	return errors.Is(err, os.ErrDeadlineExceeded) || errors.As(err, &t) && t.Timeout()
}

type heldPacket struct {
	data  []byte
	attrs interceptor.Attributes
}

// replayReader yields the packets already read, then reads from src.
type replayReader struct {
	held []heldPacket
	src  RTPReader
}

func (r *replayReader) Read(b []byte) (int, interceptor.Attributes, error) {
	if len(r.held) > 0 {
		p := r.held[0]
		r.held[0] = heldPacket{}
		r.held = r.held[1:]
		return copy(b, p.data), p.attrs, nil
	}
	return r.src.Read(b)
}

// PreferCodec limits what tx receives to the codec mime (any of its profiles) and the RTX
// streams that repair it, so that an offer made with tx leaves the client no other codec to
// send in. An error names a codec this node does not receive.
func PreferCodec(tx *webrtc.RTPTransceiver, mime string) error {
	all := tx.Receiver().GetParameters().Codecs
	var keep []webrtc.RTPCodecParameters
	pts := map[string]bool{}
	for _, c := range all {
		if strings.EqualFold(c.MimeType, mime) {
			keep = append(keep, c)
			pts["apt="+strconv.Itoa(int(c.PayloadType))] = true
		}
	}
	if len(keep) == 0 {
		return fmt.Errorf("codec %s is not one this node receives", mime)
	}
	for _, c := range all {
		if strings.EqualFold(c.MimeType, webrtc.MimeTypeRTX) && slices.ContainsFunc(strings.Split(c.SDPFmtpLine, ";"), func(p string) bool { return pts[strings.TrimSpace(p)] }) {
			keep = append(keep, c)
		}
	}
	if err := tx.SetCodecPreferences(keep); err != nil {
		return fmt.Errorf("prefer %s: %w", mime, err)
	}
	return nil
}
