//go:build linux

package loadgen

import (
	"fmt"
	"net"
	"net/netip"
	"unsafe"

	"golang.org/x/sys/unix"
)

// stampArrivals asks the kernel for each datagram's arrival time (SO_TIMESTAMPNS, the
// realtime clock the publisher's send times are taken on).
func stampArrivals(conn *net.UDPConn) error {
	raw, err := conn.SyscallConn()
	if err != nil {
		return fmt.Errorf("SO_TIMESTAMPNS: %w", err)
	}
	var serr error
	if err := raw.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1)
	}); err != nil {
		return fmt.Errorf("SO_TIMESTAMPNS: %w", err)
	}
	if serr != nil {
		return fmt.Errorf("SO_TIMESTAMPNS: %w", serr)
	}
	return nil
}

// parseCmsgs reads a datagram's control messages in place (x/net's ControlMessage.Parse
// allocates per datagram): its destination address from IP_PKTINFO, ok only with one, and
// its arrival time in Unix nanoseconds from SCM_TIMESTAMPNS, 0 without one.
func parseCmsgs(oob []byte) (dst netip.Addr, arrived int64, ok bool) {
	hdrLen := unix.CmsgLen(0)
	for len(oob) >= hdrLen {
		h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
		l := int(h.Len)
		if l < hdrLen || l > len(oob) {
			return dst, arrived, ok
		}
		switch {
		case h.Level == unix.IPPROTO_IP && h.Type == unix.IP_PKTINFO && l >= hdrLen+unix.SizeofInet4Pktinfo:
			pi := (*unix.Inet4Pktinfo)(unsafe.Pointer(&oob[hdrLen]))
			dst, ok = netip.AddrFrom4(pi.Addr), true
		case h.Level == unix.SOL_SOCKET && h.Type == unix.SCM_TIMESTAMPNS && l >= hdrLen+int(unsafe.Sizeof(unix.Timespec{})):
			ts := (*unix.Timespec)(unsafe.Pointer(&oob[hdrLen]))
			arrived = ts.Nano()
		}
		oob = oob[min(unix.CmsgSpace(l-hdrLen), len(oob)):]
	}
	return dst, arrived, ok
}
