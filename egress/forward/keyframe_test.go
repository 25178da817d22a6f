package forward

import (
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
	"github.com/stretchr/testify/require"
)

// vp8Frame packetizes a VP8 frame (key: the frame header's P bit clear) with pion's payloader.
func vp8Frame(t testing.TB, key bool, pictureID bool, size int) [][]byte {
	t.Helper()
	frame := make([]byte, size)
	frame[0] = 0x01 // P = 1: inter frame
	if key {
		frame[0] = 0x10 // P = 0, then the key frame's start code
		frame[3], frame[4], frame[5] = 0x9d, 0x01, 0x2a
	}
	p := &codecs.VP8Payloader{EnablePictureID: pictureID}
	return p.Payload(1200, frame)
}

func h264Units(t testing.TB, nals ...[]byte) [][]byte {
	t.Helper()
	var stream []byte
	for _, n := range nals {
		stream = append(stream, 0, 0, 0, 1)
		stream = append(stream, n...)
	}
	return (&codecs.H264Payloader{}).Payload(1200, stream)
}

func nal(typ byte, size int) []byte {
	b := make([]byte, size)
	b[0] = 0x60 | typ
	for i := 1; i < size; i++ {
		b[i] = 0xaa
	}
	return b
}

func withHeader(t testing.TB, seq uint16, payload []byte, mutate func(*rtp.Packet)) []byte {
	t.Helper()
	p := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: seq, Timestamp: 9000, SSRC: 5}, Payload: payload}
	if mutate != nil {
		mutate(&p)
	}
	b, err := p.Marshal()
	require.NoError(t, err)
	return b
}

func TestKeyframeStart(t *testing.T) {
	vp8 := KeyframeStart("video/VP8")
	h264 := KeyframeStart("video/H264")
	require.Nil(t, KeyframeStart("audio/opus"))
	require.Nil(t, KeyframeStart("video/AV1"))

	key := vp8Frame(t, true, false, 3000)
	keyPID := vp8Frame(t, true, true, 3000)
	inter := vp8Frame(t, false, true, 3000)
	require.Greater(t, len(key), 2)
	ext := func(p *rtp.Packet) { require.NoError(t, p.SetExtension(3, []byte{1, 2, 3})) }
	pad := func(p *rtp.Packet) { p.Padding, p.PaddingSize = true, 4 }
	csrc := func(p *rtp.Packet) { p.CSRC = []uint32{1, 2} }

	// SPS and PPS before an IDR: pion aggregates them with the IDR's start? No: SPS and PPS
	// go out in a STAP-A of their own, the IDR after them, fragmented when large.
	spsIDR := h264Units(t, nal(7, 10), nal(8, 4), nal(5, 3000))
	idrOnly := h264Units(t, nal(5, 3000))
	small := h264Units(t, nal(5, 100))
	slice := h264Units(t, nal(1, 3000))

	cases := []struct {
		name string
		test func([]byte) bool
		pkt  []byte
		want bool
	}{
		{"vp8 key frame's first packet", vp8, withHeader(t, 1, key[0], nil), true},
		{"vp8 key frame, picture id", vp8, withHeader(t, 1, keyPID[0], nil), true},
		{"vp8 key frame, header extension", vp8, withHeader(t, 1, keyPID[0], ext), true},
		{"vp8 key frame, padding and CSRCs", vp8, withHeader(t, 1, keyPID[0], func(p *rtp.Packet) { pad(p); csrc(p) }), true},
		{"vp8 key frame's second packet", vp8, withHeader(t, 2, key[1], nil), false},
		{"vp8 inter frame", vp8, withHeader(t, 1, inter[0], nil), false},
		{"vp8 empty payload", vp8, withHeader(t, 1, nil, nil), false},
		{"vp8 descriptor only", vp8, withHeader(t, 1, []byte{0x90, 0x80}, nil), false},
		{"h264 SPS/PPS aggregate", h264, withHeader(t, 1, spsIDR[0], nil), true},
		{"h264 IDR first fragment", h264, withHeader(t, 1, idrOnly[0], nil), true},
		{"h264 IDR middle fragment", h264, withHeader(t, 2, idrOnly[1], nil), false},
		{"h264 small IDR alone", h264, withHeader(t, 1, small[0], nil), true},
		{"h264 non-IDR slice", h264, withHeader(t, 1, slice[0], nil), false},
		{"h264 truncated STAP-A", h264, withHeader(t, 1, []byte{24, 0, 9, 0x67}, nil), false},
		{"h264 FU-A too short", h264, withHeader(t, 1, []byte{28}, nil), false},
		{"not RTP", vp8, []byte{0x16, 0xfe, 0xfd}, false},
		{"extension past the end", h264, []byte{0x90, 96, 0, 1, 0, 0, 0, 0, 0, 0, 0, 5, 0xbe, 0xde, 0, 9, 0x65}, false},
		{"padding past the end", h264, []byte{0xa0, 96, 0, 1, 0, 0, 0, 0, 0, 0, 0, 5, 0x65, 9}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) { require.Equal(t, tc.want, tc.test(tc.pkt)) })
	}
}

// FuzzKeyframeStart: any bytes give an answer, never a panic.
func FuzzKeyframeStart(f *testing.F) {
	f.Add([]byte{0x80, 96, 0, 1, 0, 0, 0, 0, 0, 0, 0, 5, 0x10, 0x10})
	f.Add([]byte{0x90, 96, 0, 1, 0, 0, 0, 0, 0, 0, 0, 5, 0xbe, 0xde, 0, 1, 0, 0, 0, 0, 0x7c, 0x85})
	f.Add([]byte{0xa0, 96, 0, 1, 0, 0, 0, 0, 0, 0, 0, 5, 24, 0, 2, 0x67, 0, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		_ = vp8KeyframeStart(b)
		_ = h264KeyframeStart(b)
	})
}

// vp8Stream is a publisher's VP8 packets from seq on: frames of 3 packets, a key frame at
// each index in keys.
func vp8Stream(t testing.TB, seq uint16, frames int, keys ...int) [][]byte {
	t.Helper()
	var out [][]byte
	for f := range frames {
		key := false
		for _, k := range keys {
			key = key || k == f
		}
		for _, pl := range vp8Frame(t, key, true, 3000) {
			out = append(out, withHeader(t, seq, pl, nil))
			seq++
		}
	}
	return out
}

// zeroWriter takes nothing and says nothing, as pion's track writer before SRTP is up.
type zeroWriter struct{}

func (zeroWriter) Write([]byte) (int, error) { return 0, nil }

// join attaches o and starts it as a track does once the viewer's transport is up.
func join(f *Fanout, o *Output) bool {
	f.add(o)
	return f.start(o)
}

func seqs(c *collector) []uint16 {
	var s []uint16
	for _, p := range c.got() {
		s = append(s, p.SequenceNumber)
	}
	return s
}

func TestViewerStartsAtCachedKeyframe(t *testing.T) {
	f := &Fanout{}
	live := NewOutput(1, 96, &collector{})
	live.StartAtKeyframe(KeyframeStart("video/VP8"))
	join(f, live)
	stream := vp8Stream(t, 100, 6, 0, 4) // key frames at packets 100 and 112
	for _, p := range stream[:14] {      // up to 113: the second key frame and one more
		f.Forward(p)
	}
	c := &collector{}
	o := NewOutput(2, 96, c)
	o.StartAtKeyframe(KeyframeStart("video/VP8"))
	require.True(t, join(f, o))
	require.True(t, o.StartedFromCache())
	require.Equal(t, []uint16{112, 113}, seqs(c), "the newest key frame and what followed, at once")
	for _, p := range stream[14:] {
		f.Forward(p)
	}
	require.Equal(t, []uint16{112, 113, 114, 115, 116, 117}, seqs(c), "then live, nothing twice")
	require.Equal(t, uint64(2), f.Counters().Replayed)
	require.Zero(t, f.Counters().Dropped)
}

func TestViewerWaitsForKeyframe(t *testing.T) {
	vp8 := KeyframeStart("video/VP8")
	t.Run("none seen yet", func(t *testing.T) {
		f := &Fanout{}
		c := &collector{}
		o := NewOutput(2, 96, c)
		o.StartAtKeyframe(vp8)
		join(f, o)
		require.False(t, o.StartedFromCache())
		stream := vp8Stream(t, 100, 4, 2)
		for _, p := range stream {
			f.Forward(p)
		}
		require.Equal(t, []uint16{106, 107, 108, 109, 110, 111}, seqs(c), "from the key frame on")
	})
	t.Run("too old", func(t *testing.T) {
		f := &Fanout{}
		live := NewOutput(1, 96, &collector{})
		live.StartAtKeyframe(vp8)
		join(f, live)
		stream := vp8Stream(t, 100, MaxReplay/3+4, 0)
		for _, p := range stream {
			f.Forward(p)
		}
		c := &collector{}
		o := NewOutput(2, 96, c)
		o.StartAtKeyframe(vp8)
		join(f, o)
		require.False(t, o.StartedFromCache())
		require.Empty(t, c.got())
		next := vp8Stream(t, 100+uint16(len(stream)), 2, 1)
		for _, p := range next {
			f.Forward(p)
		}
		require.Len(t, c.got(), 3, "the next key frame's packets")
	})
	t.Run("a packet missing", func(t *testing.T) {
		f := &Fanout{}
		live := NewOutput(1, 96, &collector{})
		live.StartAtKeyframe(vp8)
		join(f, live)
		stream := vp8Stream(t, 100, 3, 0)
		for i, p := range stream {
			if i != 4 { // lost on the way in
				f.Forward(p)
			}
		}
		o := NewOutput(2, 96, &collector{})
		o.StartAtKeyframe(vp8)
		join(f, o)
		require.False(t, o.StartedFromCache())
	})
	t.Run("a publisher that sends none is played after the bound", func(t *testing.T) {
		f := &Fanout{}
		c := &collector{}
		o := NewOutput(2, 96, c)
		o.StartAtKeyframe(vp8)
		join(f, o)
		stream := vp8Stream(t, 0, MaxKeyframeWait/3+2)
		for _, p := range stream {
			f.Forward(p)
		}
		require.Len(t, c.got(), len(stream)-MaxKeyframeWait)
	})
	t.Run("dormant until started", func(t *testing.T) {
		f := &Fanout{}
		c := &collector{}
		o := NewOutput(2, 96, c)
		o.StartAtKeyframe(vp8)
		f.add(o)
		stream := vp8Stream(t, 0, 4, 0, 2)
		for _, p := range stream {
			f.Forward(p)
		}
		require.Empty(t, c.got(), "nothing before start, key frames neither")
		require.True(t, f.start(o), "the newest key frame is cached")
		require.Equal(t, []uint16{6, 7, 8, 9, 10, 11}, seqs(c))
		require.False(t, f.start(o), "started once")

		never := &collector{}
		o2 := NewOutput(3, 96, never)
		o2.StartAtKeyframe(vp8)
		f.add(o2)
		more := vp8Stream(t, 12, MaxKeyframeWait/3+2)
		for _, p := range more {
			f.Forward(p)
		}
		require.Empty(t, never.got(), "not started: nothing, however long")
		f.remove(o2)
		require.False(t, f.start(o2), "not attached")
	})
	t.Run("a transport that takes nothing yet", func(t *testing.T) {
		f := &Fanout{}
		live := NewOutput(1, 96, &collector{})
		live.StartAtKeyframe(vp8)
		join(f, live)
		for _, p := range vp8Stream(t, 0, 2, 0) {
			f.Forward(p)
		}
		o := NewOutput(2, 96, zeroWriter{})
		o.StartAtKeyframe(vp8)
		require.False(t, join(f, o), "pion's writer before SRTP: 0 bytes, no error")
		require.True(t, o.waitKey)
	})
	t.Run("audio and outputs without a test start at once", func(t *testing.T) {
		f := &Fanout{}
		c := &collector{}
		f.add(NewOutput(2, 96, c))
		f.Forward(vp8Stream(t, 0, 1)[1])
		require.Len(t, c.got(), 1)
	})
}

// With worker lanes the packets a lane has queued but not yet written to a new viewer's lane
// are among those replayed: none arrives twice or is skipped.
func TestViewerStartsAtCachedKeyframeWithLanes(t *testing.T) {
	vp8 := KeyframeStart("video/VP8")
	f := &Fanout{maxLanes: 2}
	defer f.close()
	for i := range LaneMin {
		o := NewOutput(uint32(10+i), 96, discard{})
		o.StartAtKeyframe(vp8)
		join(f, o)
	}
	stream := vp8Stream(t, 500, 40, 0, 20)
	cols := []*collector{}
	for i, p := range stream {
		f.Forward(p)
		if i%5 == 0 && i > 60 {
			c := &collector{}
			o := NewOutput(uint32(100+i), 96, c)
			o.StartAtKeyframe(vp8)
			join(f, o)
			cols = append(cols, c)
		}
	}
	last := 500 + uint16(len(stream)) - 1
	require.Len(t, f.lanes, 2, "the late viewers are written by the worker lane")
	for _, c := range cols { // the worker lane writes the last packets after Forward returns
		require.Eventually(t, func() bool { s := seqs(c); return len(s) > 0 && s[len(s)-1] == last }, 5*time.Second, time.Millisecond)
	}
	for _, c := range cols {
		got := seqs(c)
		require.NotEmpty(t, got)
		require.Equal(t, uint16(560), got[0], "every late viewer starts at the newest key frame")
		for i := 1; i < len(got); i++ {
			require.Equal(t, got[i-1]+1, got[i], "in order, none twice, none skipped")
		}
		require.Equal(t, last, got[len(got)-1])
	}
}

// TestStartedViewerMovedToAnotherLayer: a viewer started from one layer's cached key frame and
// then moved to another layer's fan-out (a layer switch, at that layer's key frame) plays the
// new layer at once: it is neither dormant again nor skipping up to a sequence number of the
// old layer (the two layers number their packets apart).
func TestStartedViewerMovedToAnotherLayer(t *testing.T) {
	vp8 := KeyframeStart("video/VP8")
	from, to := &Fanout{}, &Fanout{}
	live := NewOutput(1, 96, &collector{}) // the old layer's first viewer: its key frames get noted
	live.StartAtKeyframe(vp8)
	join(from, live)
	for _, p := range vp8Stream(t, 30000, 3, 0) {
		from.Forward(p)
	}
	c := &collector{}
	o := NewOutput(2, 96, c)
	o.StartAtKeyframe(vp8)
	require.True(t, join(from, o), "started from the old layer's cache")
	require.Len(t, c.got(), 9)

	from.remove(o)
	to.insert(o, true)                          // as Hub.move does
	for _, p := range vp8Stream(t, 100, 2, 0) { // the new layer, from its key frame
		to.Forward(p)
	}
	require.Len(t, c.got(), 15, "the moved viewer gets the new layer's packets")
}
