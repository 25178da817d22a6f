//go:build linux

package load

import (
	"net/netip"
	"unsafe"

	"golang.org/x/sys/unix"
)

// pktinfoDst is a datagram's destination address from its IP_PKTINFO control message. It
// reads the cmsg in place: x/net's ControlMessage.Parse allocates per datagram.
func pktinfoDst(oob []byte) (netip.Addr, bool) {
	hdrLen := unix.CmsgLen(0)
	for len(oob) >= hdrLen {
		h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
		l := int(h.Len)
		if l < hdrLen || l > len(oob) {
			return netip.Addr{}, false
		}
		if h.Level == unix.IPPROTO_IP && h.Type == unix.IP_PKTINFO && l >= hdrLen+unix.SizeofInet4Pktinfo {
			pi := (*unix.Inet4Pktinfo)(unsafe.Pointer(&oob[hdrLen]))
			return netip.AddrFrom4(pi.Addr), true
		}
		oob = oob[min(unix.CmsgSpace(l-hdrLen), len(oob)):]
	}
	return netip.Addr{}, false
}
