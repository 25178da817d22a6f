package sip

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func constFrame(v int16) []int16 {
	f := make([]int16, FrameSamples)
	for i := range f {
		f[i] = v
	}
	return f
}

func TestMixTopN(t *testing.T) {
	out := make([]int16, FrameSamples)
	frames := [][]int16{constFrame(100), nil, constFrame(-300), constFrame(200), constFrame(0), constFrame(50)}
	require.Equal(t, 2, Mix(out, frames, 2))
	require.Equal(t, int16(-100), out[0], "the two loudest: -300 and 200")
	require.Equal(t, 4, Mix(out, frames, 8), "silent and missing inputs are not summed")
	require.Equal(t, int16(50), out[7])
	require.Equal(t, 0, Mix(out, [][]int16{nil, constFrame(0)}, 3))
	require.Equal(t, int16(0), out[0])
	require.Equal(t, 2, Mix(out, [][]int16{constFrame(30000), constFrame(30000)}, 3))
	require.Equal(t, int16(32767), out[0], "clipped, not wrapped")
	short := [][]int16{constFrame(1000), {5, 5}}
	require.Equal(t, 2, Mix(out, short, 3))
	require.Equal(t, int16(1005), out[1])
	require.Equal(t, int16(1000), out[2], "a short frame adds nothing past its end")
}

func BenchmarkMix(b *testing.B) {
	frames := make([][]int16, 8)
	for i := range frames {
		frames[i] = tone(FrameSamples, i*37, 300+float64(i)*50, 3000+float64(i)*100)
	}
	out := make([]int16, FrameSamples)
	b.ReportAllocs()
	for b.Loop() {
		Mix(out, frames, 3)
	}
}
