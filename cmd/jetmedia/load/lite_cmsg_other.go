//go:build !linux

package load

import (
	"net/netip"

	"golang.org/x/net/ipv4"
)

// pktinfoDst is a datagram's destination address from its control messages.
func pktinfoDst(oob []byte) (netip.Addr, bool) {
	var cm ipv4.ControlMessage
	if err := cm.Parse(oob); err != nil || cm.Dst == nil {
		return netip.Addr{}, false
	}
	a, ok := netip.AddrFromSlice(cm.Dst.To4())
	return a, ok
}
