package sip

import (
	"errors"
	"fmt"
	"runtime"
	"sync"

	"github.com/ebitengine/purego"
)

// Opus comes from the system's libopus (Debian: libopus0, which ffmpeg already pulls in),
// opened at run time with purego: the binary needs neither cgo nor libopus headers to build,
// and a node without the library still serves everything but SIP audio (calls are refused
// with 503 and a log line naming the library). docs/sip.md says why this and not a child.

// ErrNoOpus: libopus could not be loaded.
var ErrNoOpus = errors.New("sip: libopus not found (Debian: apt-get install libopus0)")

const (
	opusApplicationVoIP = 2048 // OPUS_APPLICATION_VOIP
	opusOK              = 0
	// SampleRate is the rate the gateway works at: G.711's 8 kHz. libopus resamples to and
	// from it inside the codec, so no resampler of our own sits in the path.
	SampleRate = 8000
	// FrameSamples is one 20 ms frame at SampleRate.
	FrameSamples = SampleRate / 50
	// opusTicksPerFrame is one 20 ms frame on Opus's 48 kHz RTP clock (RFC 7587).
	opusTicksPerFrame = 960
)

// OpusLib is the loaded library's entry points. Load it once per process and share it.
type OpusLib struct {
	encoderCreate  func(fs int32, channels int32, application int32, err *int32) uintptr
	encode         func(enc uintptr, pcm []int16, frameSize int32, data []byte, maxBytes int32) int32
	encoderDestroy func(enc uintptr)
	decoderCreate  func(fs int32, channels int32, err *int32) uintptr
	decode         func(dec uintptr, data []byte, length int32, pcm []int16, frameSize int32, fec int32) int32
	decoderDestroy func(dec uintptr)
}

// LoadOpus opens libopus by its soname (or the given path).
func LoadOpus(path string) (lib *OpusLib, err error) {
	names := []string{path}
	if path == "" {
		names = []string{"libopus.so.0", "libopus.so", "libopus.0.dylib"}
	}
	var h uintptr
	for _, n := range names {
		if h, err = purego.Dlopen(n, purego.RTLD_NOW|purego.RTLD_LOCAL); err == nil {
			break
		}
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNoOpus, err)
	}
	defer func() {
		// RegisterLibFunc panics on a missing symbol: an old or foreign library.
		if p := recover(); p != nil {
			lib, err = nil, fmt.Errorf("%w: %v", ErrNoOpus, p)
		}
	}()
	lib = &OpusLib{}
	purego.RegisterLibFunc(&lib.encoderCreate, h, "opus_encoder_create")
	purego.RegisterLibFunc(&lib.encode, h, "opus_encode")
	purego.RegisterLibFunc(&lib.encoderDestroy, h, "opus_encoder_destroy")
	purego.RegisterLibFunc(&lib.decoderCreate, h, "opus_decoder_create")
	purego.RegisterLibFunc(&lib.decode, h, "opus_decode")
	purego.RegisterLibFunc(&lib.decoderDestroy, h, "opus_decoder_destroy")
	return lib, nil
}

// OpusEncoder encodes 20 ms mono frames at SampleRate. Not safe for concurrent use; Close
// frees it (idempotent).
type OpusEncoder struct {
	lib  *OpusLib
	mu   sync.Mutex
	enc  uintptr
	done bool
}

// NewEncoder returns a VoIP-tuned mono encoder at SampleRate.
func (l *OpusLib) NewEncoder() (*OpusEncoder, error) {
	var e int32
	h := l.encoderCreate(SampleRate, 1, opusApplicationVoIP, &e)
	if e != opusOK || h == 0 {
		return nil, fmt.Errorf("sip: opus_encoder_create: error %d", e)
	}
	return &OpusEncoder{lib: l, enc: h}, nil
}

// Encode one frame of FrameSamples samples into dst (its capacity bounds the packet) and
// returns the Opus packet.
func (e *OpusEncoder) Encode(pcm []int16, dst []byte) ([]byte, error) {
	if len(pcm) != FrameSamples || cap(dst) == 0 {
		return nil, fmt.Errorf("sip: opus encode: %d samples, want %d", len(pcm), FrameSamples)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.done {
		return nil, errors.New("sip: opus encoder closed")
	}
	dst = dst[:cap(dst)]
	n := e.lib.encode(e.enc, pcm, FrameSamples, dst, int32(len(dst)))
	runtime.KeepAlive(pcm)
	runtime.KeepAlive(dst)
	if n < 0 {
		return nil, fmt.Errorf("sip: opus_encode: error %d", n)
	}
	return dst[:n], nil
}

// Close frees the encoder.
func (e *OpusEncoder) Close() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.done {
		e.done = true
		e.lib.encoderDestroy(e.enc)
	}
}

// OpusDecoder decodes any Opus stream (mono or stereo, any bandwidth) to mono at SampleRate.
type OpusDecoder struct {
	lib  *OpusLib
	mu   sync.Mutex
	dec  uintptr
	done bool
}

// NewDecoder returns a mono decoder at SampleRate.
func (l *OpusLib) NewDecoder() (*OpusDecoder, error) {
	var e int32
	h := l.decoderCreate(SampleRate, 1, &e)
	if e != opusOK || h == 0 {
		return nil, fmt.Errorf("sip: opus_decoder_create: error %d", e)
	}
	return &OpusDecoder{lib: l, dec: h}, nil
}

// maxDecodeSamples is 120 ms at SampleRate, the longest Opus packet.
const maxDecodeSamples = SampleRate * 120 / 1000

// Decode one packet into pcm (capacity at least 120 ms, 960 samples); nil data conceals a lost
// packet. It returns the samples decoded.
func (d *OpusDecoder) Decode(data []byte, pcm []int16) ([]int16, error) {
	if cap(pcm) < maxDecodeSamples {
		return nil, fmt.Errorf("sip: opus decode buffer of %d samples, want %d", cap(pcm), maxDecodeSamples)
	}
	if len(data) > 1275*3 { // RFC 6716: a packet is at most 1275 bytes a frame, 3 frames
		return nil, errors.New("sip: opus packet too long")
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.done {
		return nil, errors.New("sip: opus decoder closed")
	}
	pcm = pcm[:maxDecodeSamples]
	var n int32
	if len(data) == 0 {
		n = d.lib.decode(d.dec, nil, 0, pcm, FrameSamples, 0)
	} else {
		n = d.lib.decode(d.dec, data, int32(len(data)), pcm, maxDecodeSamples, 0)
	}
	runtime.KeepAlive(data)
	runtime.KeepAlive(pcm)
	if n < 0 {
		return nil, fmt.Errorf("sip: opus_decode: error %d", n)
	}
	return pcm[:n], nil
}

// Close frees the decoder.
func (d *OpusDecoder) Close() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.done {
		d.done = true
		d.lib.decoderDestroy(d.dec)
	}
}
