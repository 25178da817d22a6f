package sip

import (
	"math"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestG711KnownValues(t *testing.T) {
	require.Equal(t, byte(0xff), MulawEncode(0))
	require.Equal(t, byte(0x80), MulawEncode(32767))
	require.Equal(t, byte(0x00), MulawEncode(-32768))
	require.Equal(t, int16(0), MulawDecode(0xff))
	require.Equal(t, int16(32124), MulawDecode(0x80))
	require.Equal(t, int16(-32124), MulawDecode(0x00))
	require.Equal(t, byte(0xd5), AlawEncode(0))
	require.Equal(t, byte(0xaa), AlawEncode(32767))
	require.Equal(t, byte(0x2a), AlawEncode(-32768))
	require.Equal(t, int16(8), AlawDecode(0xd5))
	require.Equal(t, int16(32256), AlawDecode(0xaa))
	require.Equal(t, int16(-32256), AlawDecode(0x2a))
}

// Every code decodes to a value that encodes back to the same code (but µ-law's two zeros),
// and decoding is monotonic in the linear value: the curve is a real compander.
func TestG711RoundTripAndMonotonic(t *testing.T) {
	for _, law := range []Law{PCMU, PCMA} {
		enc, dec := MulawEncode, MulawDecode
		if law == PCMA {
			enc, dec = AlawEncode, AlawDecode
		}
		for c := 0; c < 256; c++ {
			v := dec(byte(c))
			if law == PCMU && c == 0x7f {
				require.Equal(t, byte(0xff), enc(v), "µ-law negative zero")
				continue
			}
			require.Equal(t, byte(c), enc(v), "%v code %#x -> %d", law, c, v)
		}
		prev := math.MinInt
		for s := -32768; s <= 32767; s += 7 {
			v := int(dec(enc(int16(s))))
			require.GreaterOrEqual(t, v, prev, "%v not monotonic at %d", law, s)
			prev = v
		}
	}
}

// The quantisation error stays within G.711's segment step: signal to noise of a full-scale
// sine above 30 dB for both laws.
func TestG711SignalToNoise(t *testing.T) {
	for _, law := range []Law{PCMU, PCMA} {
		pcm := make([]int16, 8000)
		for i := range pcm {
			pcm[i] = int16(20000 * math.Sin(2*math.Pi*440*float64(i)/8000))
		}
		out := law.Decode(make([]int16, len(pcm)), law.Encode(make([]byte, len(pcm)), pcm))
		var sig, noise float64
		for i := range pcm {
			sig += float64(pcm[i]) * float64(pcm[i])
			d := float64(pcm[i]) - float64(out[i])
			noise += d * d
		}
		snr := 10 * math.Log10(sig/noise)
		require.Greater(t, snr, 30.0, "%v SNR %.1f dB", law, snr)
	}
}

func BenchmarkG711(b *testing.B) {
	pcm := make([]int16, 160)
	for i := range pcm {
		pcm[i] = int16(i * 200)
	}
	buf := make([]byte, 160)
	back := make([]int16, 160)
	for _, law := range []Law{PCMU, PCMA} {
		b.Run(law.String()+"/encode+decode-20ms", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				law.Decode(back, law.Encode(buf, pcm))
			}
		})
	}
}
