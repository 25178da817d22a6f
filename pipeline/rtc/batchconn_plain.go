//go:build !(linux && (amd64 || arm64))

package rtc

import (
	"errors"
	"net"
)

// sendPlan is empty where packets are sent one write each.
type sendPlan struct{}

// newWriter has no faster way than the socket's own writes here.
func newWriter(*net.UDPConn, bool, *sources) (writer, error, error) {
	return nil, nil, errors.New("rtc: no sendmmsg on this platform: one write per packet")
}
