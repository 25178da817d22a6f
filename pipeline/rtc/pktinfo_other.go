//go:build !linux

package rtc

import (
	"errors"
	"net"
)

const pktinfoSpace = 0

// receiveDestinations is Linux's only: elsewhere an edge bound to every interface answers
// from the address the kernel's route picks.
func receiveDestinations(*net.UDPConn) (bool, error) {
	return false, errors.New("rtc: no packet info on this platform: replies leave from the route's address")
}

func destinationOf([]byte) (source, bool) { return source{}, false }

func putSource([]byte, source, bool) int { return 0 }
