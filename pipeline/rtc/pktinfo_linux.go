//go:build linux

package rtc

import (
	"fmt"
	"net"
	"net/netip"
	"unsafe"

	"golang.org/x/sys/unix"
)

// pktinfoSpace is the room a source's control message takes: CMSG_SPACE of struct
// in6_pktinfo (the larger of the two families').
const pktinfoSpace = 40

// receiveDestinations has the kernel tell, with each datagram conn receives, the local
// address it was sent to (IP_PKTINFO, or IPV6_PKTINFO on a dual-stack socket, whose IPv4
// datagrams come with the address mapped); inet6 is whether conn is an AF_INET6 socket.
func receiveDestinations(conn *net.UDPConn) (inet6 bool, err error) {
	raw, err := conn.SyscallConn()
	if err != nil {
		return false, fmt.Errorf("rtc: packet info: %w", err)
	}
	var serr error
	cerr := raw.Control(func(fd uintptr) {
		var sa unix.Sockaddr
		if sa, serr = unix.Getsockname(int(fd)); serr != nil {
			return
		}
		if _, inet6 = sa.(*unix.SockaddrInet6); inet6 {
			serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_RECVPKTINFO, 1)
		} else {
			serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_PKTINFO, 1)
		}
	})
	if cerr != nil {
		return false, fmt.Errorf("rtc: packet info: %w", cerr)
	}
	if serr != nil {
		return false, fmt.Errorf("rtc: packet info: %w", serr)
	}
	return inet6, nil
}

// destinationOf finds a received datagram's local address in its control messages.
func destinationOf(oob []byte) (source, bool) {
	for len(oob) >= unix.SizeofCmsghdr {
		h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
		l := int(h.Len)
		if l < unix.SizeofCmsghdr || l > len(oob) {
			return source{}, false
		}
		data := oob[unix.CmsgLen(0):l]
		switch {
		case h.Level == unix.IPPROTO_IP && h.Type == unix.IP_PKTINFO && len(data) >= unix.SizeofInet4Pktinfo:
			pi := (*unix.Inet4Pktinfo)(unsafe.Pointer(&data[0]))
			return source{addr: netip.AddrFrom4(pi.Addr), ifindex: uint32(pi.Ifindex)}, true
		case h.Level == unix.IPPROTO_IPV6 && h.Type == unix.IPV6_PKTINFO && len(data) >= unix.SizeofInet6Pktinfo:
			pi := (*unix.Inet6Pktinfo)(unsafe.Pointer(&data[0]))
			return source{addr: netip.AddrFrom16(pi.Addr), ifindex: pi.Ifindex}, true
		}
		oob = oob[min(unix.CmsgSpace(l-unix.CmsgLen(0)), len(oob)):]
	}
	return source{}, false
}

// putSource writes into b (8-byte aligned, pktinfoSpace long at least) the control message
// that sends a datagram from src, for an AF_INET6 socket if inet6, and returns its length.
// The interface is named only for a link-local source, which needs it; otherwise the route
// picks it, as for any datagram.
func putSource(b []byte, src source, inet6 bool) int {
	h := (*unix.Cmsghdr)(unsafe.Pointer(&b[0]))
	data := unsafe.Pointer(&b[unix.CmsgLen(0)])
	var ifindex uint32
	if src.addr.IsLinkLocalUnicast() {
		ifindex = src.ifindex
	}
	if inet6 {
		h.Level, h.Type = unix.IPPROTO_IPV6, unix.IPV6_PKTINFO
		h.SetLen(unix.CmsgLen(unix.SizeofInet6Pktinfo))
		*(*unix.Inet6Pktinfo)(data) = unix.Inet6Pktinfo{Addr: src.addr.As16(), Ifindex: ifindex}
		return unix.CmsgSpace(unix.SizeofInet6Pktinfo)
	}
	h.Level, h.Type = unix.IPPROTO_IP, unix.IP_PKTINFO
	h.SetLen(unix.CmsgLen(unix.SizeofInet4Pktinfo))
	*(*unix.Inet4Pktinfo)(data) = unix.Inet4Pktinfo{Ifindex: int32(ifindex), Spec_dst: src.addr.Unmap().As4()}
	return unix.CmsgSpace(unix.SizeofInet4Pktinfo)
}
