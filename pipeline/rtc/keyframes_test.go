package rtc

import (
	"testing"

	"github.com/pion/rtcp"
	"github.com/stretchr/testify/require"
)

func TestLayerKey(t *testing.T) {
	require.Equal(t, "cam", LayerKey("cam", ""))
	require.Equal(t, "cam", LayerKey("cam", SingleLayer))
	require.Equal(t, "cam/h", LayerKey("cam", "h"))
	track, layer := SplitLayerKey("cam/h")
	require.Equal(t, []string{"cam", "h"}, []string{track, layer})
	track, layer = SplitLayerKey("cam")
	require.Equal(t, []string{"cam", ""}, []string{track, layer})
}

// A keyframe request that names a simulcast layer asks that layer's SSRC alone; one without
// a layer, or naming a layer not published (yet), asks every layer.
func TestKeyframesPerLayer(t *testing.T) {
	var k Keyframes
	k.Add("cam", "q", 10)
	k.Add("cam", "h", 11)
	k.Add("cam", "f", 12)
	k.Add("cam", "f", 12) // a layer's second OnTrack adds nothing
	k.Add("mic", "", 20)
	ssrcs := func(key string) []uint32 {
		var out []uint32
		for _, p := range k.plis(key) {
			out = append(out, p.(*rtcp.PictureLossIndication).MediaSSRC)
		}
		return out
	}
	require.Equal(t, []uint32{11}, ssrcs(LayerKey("cam", "h")))
	require.Equal(t, []uint32{10, 11, 12}, ssrcs("cam"))
	require.Equal(t, []uint32{10, 11, 12}, ssrcs(LayerKey("cam", "x")), "an unknown layer: every layer")
	require.Equal(t, []uint32{20}, ssrcs("mic"))
	require.Empty(t, ssrcs("other"))
	require.True(t, k.Owns(LayerKey("cam", "q")))
	require.False(t, k.Owns("other"))
}
