//go:build !(linux && (amd64 || arm64))

package rtc

import (
	"errors"
	"net"
)

// sysBatch is empty where packets are sent one write each.
type sysBatch struct{}

// newWriter has no faster way than the socket's own writes here.
func newWriter(*net.UDPConn) (writer, error) {
	return nil, errors.New("rtc: no sendmmsg on this platform: one write per packet")
}
