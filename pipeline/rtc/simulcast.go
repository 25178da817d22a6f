package rtc

import (
	"fmt"
	"slices"
	"strings"

	"github.com/pion/sdp/v3"
)

// SingleLayer is the layer of a track sent without simulcast: md.<room>.<track>.0.
const SingleLayer = "0"

// MaxLayers bounds the simulcast layers taken from one m-line: browsers send at most three;
// more only costs subscriptions and subjects.
const MaxLayers = 4

// SimulcastLayers reads the simulcast layers (RIDs, RFC 8851/8853) an offer sends on each of
// its m-lines, by mid, lowest quality first (see OrderLayers). m-lines without a=simulcast
// are absent. RIDs that are not valid subject tokens are left out.
func SimulcastLayers(s *sdp.SessionDescription) map[string][]string {
	out := map[string][]string{}
	for _, m := range s.MediaDescriptions {
		mid, _ := m.Attribute("mid")
		sim, ok := m.Attribute("simulcast")
		if !ok || mid == "" {
			continue
		}
		var rids []string
		for _, id := range simulcastSendRIDs(sim) {
			if validLayer(id) && !slices.Contains(rids, id) && len(rids) < MaxLayers {
				rids = append(rids, id)
			}
		}
		if len(rids) > 0 {
			out[mid] = OrderLayers(rids)
		}
	}
	return out
}

// simulcastSendRIDs are the RIDs of an a=simulcast value's send direction ("send q;h;f",
// alternatives "a,b" and paused "~a" included as their ids).
func simulcastSendRIDs(v string) []string {
	f := strings.Fields(v)
	var ids []string
	for i := 0; i+1 < len(f); i += 2 {
		if f[i] != "send" {
			continue
		}
		for _, alt := range strings.FieldsFunc(f[i+1], func(r rune) bool { return r == ';' || r == ',' }) {
			ids = append(ids, strings.TrimPrefix(alt, "~"))
		}
	}
	return ids
}

// validLayer reports whether a RID can be a media subject's last token (RFC 8851 allows
// letters, digits, '-' and '_'; 16 characters are plenty).
func validLayer(id string) bool {
	if id == "" || len(id) > 16 {
		return false
	}
	for _, r := range id {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return false
		}
	}
	return true
}

// layerRank orders the RID names clients use (LiveKit and most SDKs "q h f", others
// "l m h", "low mid high", numbers) from the lowest quality up.
var layerRank = map[string]int{
	"q": 0, "l": 0, "low": 0, "lo": 0,
	"m": 1, "mid": 1, "medium": 1,
	"f": 2, "hi": 2, "high": 2, "full": 2,
}

// OrderLayers puts RIDs lowest quality first: known names by their meaning ("h" is half
// between "q" and "f", high after "l" and "m"), numbers by value, otherwise the order the
// client listed them in (WebRTC's sendEncodings convention lists the lowest first).
func OrderLayers(rids []string) []string {
	rank := func(id string) (int, bool) {
		id = strings.ToLower(id)
		if id == "h" { // "half" among q/h/f, "high" among l/m/h
			if slices.ContainsFunc(rids, func(r string) bool { return strings.EqualFold(r, "f") }) {
				return 1, true
			}
			return 2, true
		}
		if r, ok := layerRank[id]; ok {
			return r, true
		}
		if len(id) == 1 && id[0] >= '0' && id[0] <= '9' {
			return int(id[0] - '0'), true
		}
		return 0, false
	}
	for _, id := range rids {
		if _, ok := rank(id); !ok {
			return slices.Clone(rids)
		}
	}
	out := slices.Clone(rids)
	slices.SortStableFunc(out, func(a, b string) int {
		ra, _ := rank(a)
		rb, _ := rank(b)
		return ra - rb
	})
	return out
}

// CheckLayers validates the simulcast layers a client says it will send (RIDs: at most
// MaxLayers valid, distinct subject tokens) and returns them lowest first.
func CheckLayers(ids []string) ([]string, error) {
	if len(ids) > MaxLayers {
		return nil, fmt.Errorf("at most %d simulcast layers (got %d)", MaxLayers, len(ids))
	}
	for i, id := range ids {
		if !validLayer(id) {
			return nil, fmt.Errorf("simulcast layer %q is not 1 to 16 letters, digits, '-' or '_'", id)
		}
		if slices.Contains(ids[:i], id) {
			return nil, fmt.Errorf("simulcast layer %q given twice", id)
		}
	}
	return OrderLayers(ids), nil
}

// OfferSimulcast adds to an offer's m-lines, by mid, the request to receive simulcast layers
// (a=rid:<id> recv and a=simulcast:recv, RFC 8853): pion offers no simulcast reception of its
// own, and a browser answering such an offer sends one encoding per RID on the transceiver
// its addTrack made. m-lines that have a=simulcast already are left alone.
func OfferSimulcast(offer string, layersByMid map[string][]string) string {
	if len(layersByMid) == 0 {
		return offer
	}
	lines := strings.Split(offer, "\r\n")
	out := make([]string, 0, len(lines)+8)
	for i, line := range lines {
		out = append(out, line)
		mid, ok := strings.CutPrefix(line, "a=mid:")
		if !ok || len(layersByMid[mid]) == 0 || sectionHas(lines[i+1:], "a=simulcast:") {
			continue
		}
		for _, id := range layersByMid[mid] {
			out = append(out, "a=rid:"+id+" recv")
		}
		out = append(out, "a=simulcast:recv "+strings.Join(layersByMid[mid], ";"))
	}
	return strings.Join(out, "\r\n")
}

// sectionHas reports whether the rest of an m-section (lines up to the next m=) has a line
// starting with prefix.
func sectionHas(rest []string, prefix string) bool {
	for _, l := range rest {
		if strings.HasPrefix(l, "m=") {
			return false
		}
		if strings.HasPrefix(l, prefix) {
			return true
		}
	}
	return false
}
