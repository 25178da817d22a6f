package rtc

import (
	"bufio"
	"io"
	"mime"
	"net/http"
	"strings"

	"github.com/pion/webrtc/v4"
)

// Trickle applies a WHIP/WHEP PATCH body (application/trickle-ice-sdpfrag, RFC 8840) to pc:
// each a=candidate line is added. An ICE restart (new ice-ufrag) is answered 422: not
// supported yet.
func Trickle(r *http.Request, pc *webrtc.PeerConnection) error {
	ct, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || ct != "application/trickle-ice-sdpfrag" {
		return Errorf(http.StatusUnsupportedMediaType, "PATCH needs application/trickle-ice-sdpfrag, got %q", r.Header.Get("Content-Type"))
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, MaxSDPBytes+1))
	if err != nil {
		return Errorf(http.StatusBadRequest, "reading body: %v", err)
	}
	if len(body) > MaxSDPBytes {
		return Errorf(http.StatusRequestEntityTooLarge, "trickle body larger than %d bytes", MaxSDPBytes)
	}
	remote := pc.RemoteDescription()
	sc := bufio.NewScanner(strings.NewReader(string(body)))
	var cands []string
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case strings.HasPrefix(line, "a=ice-ufrag:"):
			if remote != nil && !strings.Contains(remote.SDP, line) {
				return Errorf(http.StatusUnprocessableEntity, "ICE restart is not supported; start a new session")
			}
		case strings.HasPrefix(line, "a=candidate:"):
			cands = append(cands, strings.TrimPrefix(line, "a="))
		}
	}
	for _, c := range cands {
		if err := pc.AddICECandidate(webrtc.ICECandidateInit{Candidate: c}); err != nil {
			return Errorf(http.StatusBadRequest, "bad candidate %q: %v", c, err)
		}
	}
	return nil
}
