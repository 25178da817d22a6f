package sip

import (
	"math"
	"os"
	"testing"

	"github.com/stretchr/testify/require"
)

// loadOpus loads libopus or skips loudly; under CI=true a missing library fails.
func loadOpus(t testing.TB) *OpusLib {
	t.Helper()
	lib, err := LoadOpus("")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("libopus is required under CI: %v", err)
		}
		t.Skipf("SKIPPING: %v", err)
	}
	return lib
}

func tone(n, start int, hz, amp float64) []int16 {
	out := make([]int16, n)
	for i := range out {
		out[i] = int16(amp * math.Sin(2*math.Pi*hz*float64(start+i)/SampleRate))
	}
	return out
}

func rms(pcm []int16) float64 {
	var s float64
	for _, v := range pcm {
		s += float64(v) * float64(v)
	}
	return math.Sqrt(s / float64(max(len(pcm), 1)))
}

// A tone goes through the real libopus and comes back with its energy; garbage is an error,
// not a crash.
func TestOpusRoundTrip(t *testing.T) {
	lib := loadOpus(t)
	enc, err := lib.NewEncoder()
	require.NoError(t, err)
	defer enc.Close()
	dec, err := lib.NewDecoder()
	require.NoError(t, err)
	defer dec.Close()
	pcm := make([]int16, maxDecodeSamples)
	buf := make([]byte, 1500)
	var out []int16
	for f := 0; f < 50; f++ {
		pkt, err := enc.Encode(tone(FrameSamples, f*FrameSamples, 440, 8000), buf)
		require.NoError(t, err)
		got, err := dec.Decode(pkt, pcm)
		require.NoError(t, err)
		require.Len(t, got, FrameSamples)
		if f >= 10 {
			out = append(out, got...)
		}
	}
	require.Greater(t, rms(out), 8000/math.Sqrt2*0.5, "decoded tone lost its energy")
	_, err = enc.Encode(make([]int16, 10), buf)
	require.Error(t, err)
	_, err = dec.Decode([]byte{0xff, 0xff, 0xff, 0xff, 0xff}, pcm)
	require.Error(t, err, "a malformed packet is an error")
	_, err = dec.Decode(make([]byte, 5000), pcm)
	require.Error(t, err)
	conceal, err := dec.Decode(nil, pcm)
	require.NoError(t, err)
	require.Len(t, conceal, FrameSamples)
	enc.Close()
	_, err = enc.Encode(tone(FrameSamples, 0, 440, 1), buf)
	require.Error(t, err)
}

func BenchmarkOpus(b *testing.B) {
	lib := loadOpus(b)
	enc, _ := lib.NewEncoder()
	defer enc.Close()
	dec, _ := lib.NewDecoder()
	defer dec.Close()
	frame := tone(FrameSamples, 0, 440, 8000)
	buf := make([]byte, 1500)
	pcm := make([]int16, maxDecodeSamples)
	pkt, _ := enc.Encode(frame, buf)
	pkt = append([]byte(nil), pkt...)
	b.Run("encode-20ms", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_, _ = enc.Encode(frame, buf)
		}
	})
	b.Run("decode-20ms", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_, _ = dec.Decode(pkt, pcm)
		}
	})
}
