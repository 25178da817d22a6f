package forward

import "slices"

// LayerTarget is what a viewer's simulcast layer is chosen from. The node fills Manual from
// the viewer's explicit choice (SDK setQuality, WHEP layer request) and Width and Height
// from the size the viewer renders the track at (the SDK reports it); a bandwidth estimator
// fills Bitrate with what it allots the track for this viewer.
type LayerTarget struct {
	// Manual is the layer the viewer asked for; "" chooses automatically.
	Manual string
	// Width and Height are the viewer's rendered size in pixels; 0: unknown (no limit).
	Width, Height int
	// Bitrate is the viewer's estimated bit rate available for the track (bit/s); 0: unknown
	// (no limit).
	Bitrate uint64
	// LayerRates are the bit rates, lowest layer first, that Bitrate was allotted from (the
	// congestion controller's measured or nominal rates), so the layer chosen is the one the
	// allocator counted; nil or of another length: the nominal rates.
	LayerRates []uint64
}

// Chooser picks one of a track's layers (lowest quality first, never empty) for a target.
// It is sans-IO and must be cheap: it runs on every change of the target. ChooseLayer is
// the default; a bandwidth estimator may install its own on a Track.
type Chooser func(layers []string, t LayerTarget) string

// Nominal sizes and bit rates of simulcast layers counted from the top one, which browsers
// send at the capture size (here assumed 720p) and each lower layer at half the one above
// (WebRTC's scaleResolutionDownBy 1, 2, 4), with Chromium's default bit rates for 720p.
var (
	nominalHeight  = [...]int{720, 360, 180, 90}
	nominalBitrate = [...]uint64{1_700_000, 500_000, 150_000, 50_000}
)

// ChooseLayer is the default Chooser: the manual layer when it is one of the track's;
// otherwise the lowest layer at least as tall as the rendered height, lowered further to
// the highest layer whose bit rate (LayerRates, else nominal) fits the estimate (the lowest
// when none fits).
func ChooseLayer(layers []string, t LayerTarget) string {
	n := len(layers)
	if n == 0 {
		return SingleLayer
	}
	if t.Manual != "" && slices.Contains(layers, t.Manual) {
		return t.Manual
	}
	pick := n - 1
	if t.Height > 0 {
		for i := range n {
			if nominal(nominalHeight[:], n-1-i) >= t.Height {
				pick = i
				break
			}
		}
	}
	if t.Bitrate > 0 {
		for pick > 0 && t.rate(n, pick) > t.Bitrate {
			pick--
		}
	}
	return layers[pick]
}

// rate is the bit rate of layer i of n: LayerRates' when it has one per layer, else nominal.
func (t LayerTarget) rate(n, i int) uint64 {
	if len(t.LayerRates) == n {
		return t.LayerRates[i]
	}
	return nominal(nominalBitrate[:], n-1-i)
}

// nominal is a table's value for the layer fromTop below the top one (the last value for any
// lower one).
func nominal[T any](table []T, fromTop int) T {
	return table[min(fromTop, len(table)-1)]
}
