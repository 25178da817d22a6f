package rtc

import "github.com/pion/rtcp"

// IsKeyframeRequest reports whether marshalled RTCP (as it arrives on a track's feedback
// subject) holds a PLI or FIR; publishers answer those with a keyframe.
func IsKeyframeRequest(data []byte) bool {
	pkts, err := rtcp.Unmarshal(data)
	if err != nil {
		return false
	}
	for _, p := range pkts {
		switch p.(type) {
		case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest:
			return true
		}
	}
	return false
}
