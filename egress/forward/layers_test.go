package forward

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestChooseLayer(t *testing.T) {
	three := []string{"q", "h", "f"}
	for _, tc := range []struct {
		name   string
		layers []string
		target LayerTarget
		want   string
	}{
		{"nothing known: top", three, LayerTarget{}, "f"},
		{"single layer", []string{"0"}, LayerTarget{Height: 90, Bitrate: 1}, "0"},
		{"no layers", nil, LayerTarget{}, "0"},
		{"manual", three, LayerTarget{Manual: "q", Height: 720}, "q"},
		{"manual unknown: automatic", three, LayerTarget{Manual: "x", Height: 100}, "q"},
		{"small element", three, LayerTarget{Width: 160, Height: 90}, "q"},
		{"medium element", three, LayerTarget{Width: 480, Height: 270}, "h"},
		{"large element", three, LayerTarget{Width: 1280, Height: 720}, "f"},
		{"huge element", three, LayerTarget{Height: 2000}, "f"},
		{"low bitrate", three, LayerTarget{Bitrate: 300_000}, "q"},
		{"too low for any: lowest", three, LayerTarget{Bitrate: 10_000}, "q"},
		{"middle bitrate", three, LayerTarget{Bitrate: 800_000}, "h"},
		{"bitrate and size: the lower", three, LayerTarget{Bitrate: 5_000_000, Height: 180}, "q"},
		{"measured rates", three, LayerTarget{Bitrate: 300_000, LayerRates: []uint64{100_000, 300_000, 900_000}}, "h"},
		{"measured rates of another track: nominal", three, LayerTarget{Bitrate: 300_000, LayerRates: []uint64{1, 2}}, "q"},
		{"two layers", []string{"l", "h"}, LayerTarget{Height: 300}, "l"},
		{"two layers large", []string{"l", "h"}, LayerTarget{Height: 500}, "h"},
	} {
		require.Equal(t, tc.want, ChooseLayer(tc.layers, tc.target), tc.name)
	}
}
