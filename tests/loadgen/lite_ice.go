package loadgen

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/pion/ice/v4"
	"github.com/pion/stun/v4"
)

// The lite viewer's ICE: the controlling side of one candidate pair, nominated at once. It
// sends Binding requests to the server's candidate (every 50 ms until one succeeds, then every
// 2 s as keepalive) and answers the server's own checks and consent requests.

// Priority of the viewer's one host candidate (type preference 126, local 65535, component 1).
const liteCandidatePriority = 2130706431

// iceCreds are one side's ICE credentials.
type iceCreds struct {
	ufrag, pwd string
}

// bindingRequest builds a nominating check from local to remote.
func bindingRequest(local, remote iceCreds, tiebreaker uint64) (*stun.Message, error) {
	m, err := stun.Build(stun.TransactionID, stun.BindingRequest,
		stun.NewUsername(remote.ufrag+":"+local.ufrag),
		ice.AttrControlling(tiebreaker),
		ice.PriorityAttr(liteCandidatePriority),
		ice.UseCandidate(),
		stun.NewShortTermIntegrity(remote.pwd),
		stun.Fingerprint)
	if err != nil {
		return nil, fmt.Errorf("stun: binding request: %w", err)
	}
	return m, nil
}

var errSTUNIgnored = errors.New("load: stun message ignored")

// stunReply is what a received STUN message asks of the viewer: a response to send, or the
// news that a check of ours succeeded.
type stunReply struct {
	response  []byte
	succeeded bool
}

// handleSTUN reads one STUN datagram from the server at from. A Binding request for local's
// ufrag with local's integrity is answered; a Binding success with remote's integrity says a
// check succeeded. Anything else is errSTUNIgnored.
func handleSTUN(b []byte, from netip.AddrPort, local, remote iceCreds) (stunReply, error) {
	m := &stun.Message{Raw: append([]byte(nil), b...)}
	if err := m.Decode(); err != nil {
		return stunReply{}, fmt.Errorf("stun: %w", err)
	}
	if err := stun.Fingerprint.Check(m); err != nil {
		return stunReply{}, fmt.Errorf("stun: %w", err)
	}
	switch m.Type {
	case stun.BindingRequest:
		var u stun.Username
		if err := u.GetFrom(m); err != nil || !strings.HasPrefix(u.String(), local.ufrag+":") {
			return stunReply{}, errSTUNIgnored
		}
		if err := stun.NewShortTermIntegrity(local.pwd).Check(m); err != nil {
			return stunReply{}, fmt.Errorf("stun: request integrity: %w", err)
		}
		resp, err := stun.Build(stun.NewTransactionIDSetter(m.TransactionID), stun.BindingSuccess,
			&stun.XORMappedAddress{IP: from.Addr().AsSlice(), Port: int(from.Port())},
			stun.NewShortTermIntegrity(local.pwd), stun.Fingerprint)
		if err != nil {
			return stunReply{}, fmt.Errorf("stun: binding response: %w", err)
		}
		return stunReply{response: resp.Raw}, nil
	case stun.BindingSuccess:
		if remote.pwd == "" {
			return stunReply{}, errSTUNIgnored
		}
		if err := stun.NewShortTermIntegrity(remote.pwd).Check(m); err != nil {
			return stunReply{}, fmt.Errorf("stun: response integrity: %w", err)
		}
		return stunReply{succeeded: true}, nil
	}
	return stunReply{}, errSTUNIgnored
}
