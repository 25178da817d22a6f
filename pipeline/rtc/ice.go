package rtc

import (
	"cmp"
	"fmt"
	"net"
	"slices"
	"strconv"

	"github.com/pion/webrtc/v4"
)

// maxLoggedPairs bounds the candidate pairs a failed session logs: enough to see which
// addresses were tried, not a page per session.
const maxLoggedPairs = 8

// CandidatePairs describes the ICE candidate pairs pc tried, from its stats: "local-type
// address -> remote-type address state (requests sent/responses received)". A session that
// failed to connect logs them, so an operator sees which addresses were offered and tried
// (a client that offers no loopback candidate to a loopback-only node, a firewall eating
// every check).
func CandidatePairs(pc *webrtc.PeerConnection) []string {
	report := pc.GetStats()
	cands := map[string]webrtc.ICECandidateStats{}
	var pairs []webrtc.ICECandidatePairStats
	for _, st := range report {
		switch v := st.(type) {
		case webrtc.ICECandidateStats:
			cands[v.ID] = v
		case webrtc.ICECandidatePairStats:
			pairs = append(pairs, v)
		}
	}
	slices.SortFunc(pairs, func(a, b webrtc.ICECandidatePairStats) int { return cmp.Compare(a.ID, b.ID) })
	out := make([]string, 0, min(len(pairs), maxLoggedPairs)+1)
	for i, p := range pairs {
		if i == maxLoggedPairs {
			out = append(out, fmt.Sprintf("(%d more)", len(pairs)-i))
			break
		}
		out = append(out, fmt.Sprintf("%s -> %s %s (%d sent/%d answered)", candidate(cands[p.LocalCandidateID]),
			candidate(cands[p.RemoteCandidateID]), p.State, p.RequestsSent, p.ResponsesReceived))
	}
	if len(out) == 0 {
		// No pair at all: the remote side gave no usable candidate (or none arrived).
		remote := 0
		for _, c := range cands {
			if c.Type == webrtc.StatsTypeRemoteCandidate {
				remote++
			}
		}
		out = append(out, fmt.Sprintf("none (%d local, %d remote candidates)", len(cands)-remote, remote))
	}
	return out
}

func candidate(c webrtc.ICECandidateStats) string {
	if c.ID == "" {
		return "?"
	}
	return c.CandidateType.String() + " " + c.Protocol + " " + net.JoinHostPort(c.IP, strconv.Itoa(int(c.Port)))
}
