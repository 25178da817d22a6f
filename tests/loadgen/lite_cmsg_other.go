//go:build !linux

package loadgen

import (
	"net"
	"net/netip"

	"golang.org/x/net/ipv4"
)

// stampArrivals does nothing here: latencies end when the reader has the packet.
func stampArrivals(*net.UDPConn) error { return nil }

// parseCmsgs is a datagram's destination address from its control messages; no arrival
// time (0).
func parseCmsgs(oob []byte) (dst netip.Addr, arrived int64, ok bool) {
	var cm ipv4.ControlMessage
	if err := cm.Parse(oob); err != nil || cm.Dst == nil {
		return netip.Addr{}, 0, false
	}
	a, ok := netip.AddrFromSlice(cm.Dst.To4())
	return a, 0, ok
}
