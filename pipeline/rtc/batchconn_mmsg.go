//go:build linux && (amd64 || arm64)

package rtc

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// sysBatch is a batch as sendmmsg(2) takes it: one message header, one iovec and one
// address per packet, pointing into the batch's own slots (filled before each send).
type sysBatch struct {
	hdrs  [batchSlots]mmsghdr
	iov   [batchSlots]syscall.Iovec
	names [batchSlots]unix.RawSockaddrInet6

	// The send in progress: packets n, sent up to off, failed of them refused; write is
	// writeFD as a method value, made once so that sending allocates nothing.
	n, off, failed int
	write          func(fd uintptr)
}

// mmsghdr is struct mmsghdr on 64-bit Linux.
type mmsghdr struct {
	hdr syscall.Msghdr
	len uint32
	_   [4]byte
}

// sendSocket is a second socket bound to the edge's address and port (SO_REUSEPORT), used
// only to send, outside the Go runtime's poller; a one-instruction classic BPF program makes
// the kernel deliver every incoming datagram to the edge's own socket (the group's first).
//
// Why a second socket: the runtime's poller registers a socket for writability too, and
// every datagram sent makes the kernel run the socket's write-space wake-up once the
// datagram is freed (at once on loopback, at transmit completion on a NIC), which wakes the
// poller's thread for a socket nobody waits to write: at 26,000 packets a second about a
// tenth of the kernel's CPU per sent packet, and a stream of scheduler wake-ups (CPU profile
// in docs/benchmarks.md). Nothing waits on this socket, so its wake-ups cost nothing. The
// socket is blocking: a full send buffer (a NIC's queue) holds the writer back as the poller
// would.
type sendSocket struct {
	fd    int
	inet6 bool // AF_INET6 (dual stack): IPv4 peers are written as ::ffff:a.b.c.d

	// use is read-held around every call on fd; close takes it so that fd is closed (and
	// its number free for reuse) only once no call has it.
	use    sync.RWMutex
	closed bool // under use
}

// steerToFirst is the reuseport program, "ret #0": every datagram to socket 0 of the group.
var steerToFirst = []unix.SockFilter{{Code: unix.BPF_RET | unix.BPF_K, K: 0}}

// newWriter opens the send socket beside conn.
func newWriter(conn *net.UDPConn) (writer, error) {
	raw, err := conn.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("rtc: send socket: %w", err)
	}
	var sa unix.Sockaddr
	var family, v6only int
	var serr error
	cerr := raw.Control(func(fd uintptr) {
		// SO_REUSEPORT after bind: the port was taken exclusively (a second server on it
		// fails as before) and only now opens to sockets of this user, the send socket next.
		if serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1); serr != nil {
			serr = fmt.Errorf("SO_REUSEPORT: %w", serr)
			return
		}
		if sa, serr = unix.Getsockname(int(fd)); serr != nil {
			return
		}
		family = unix.AF_INET
		if _, ok := sa.(*unix.SockaddrInet6); ok {
			family = unix.AF_INET6
			v6only, serr = unix.GetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_V6ONLY)
		}
	})
	if cerr != nil || serr != nil {
		return nil, fmt.Errorf("rtc: send socket: %w", firstErr(cerr, serr))
	}
	fd, err := unix.Socket(family, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("rtc: send socket: %w", err)
	}
	fail := func(what string, err error) (writer, error) {
		_ = unix.Close(fd)
		_ = raw.Control(func(s uintptr) { _ = unix.SetsockoptInt(int(s), unix.SOL_SOCKET, unix.SO_REUSEPORT, 0) })
		return nil, fmt.Errorf("rtc: send socket: %s: %w", what, err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEPORT, 1); err != nil {
		return fail("SO_REUSEPORT", err)
	}
	if family == unix.AF_INET6 {
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, v6only); err != nil {
			return fail("IPV6_V6ONLY", err)
		}
	}
	if err := unix.Bind(fd, sa); err != nil {
		return fail("bind", err)
	}
	fprog := unix.SockFprog{Len: uint16(len(steerToFirst)), Filter: &steerToFirst[0]}
	cerr = raw.Control(func(s uintptr) {
		serr = unix.SetsockoptSockFprog(int(s), unix.SOL_SOCKET, unix.SO_ATTACH_REUSEPORT_CBPF, &fprog)
	})
	if cerr != nil || serr != nil {
		return fail("SO_ATTACH_REUSEPORT_CBPF", firstErr(cerr, serr))
	}
	return &sendSocket{fd: fd, inet6: family == unix.AF_INET6}, nil
}

func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// call runs f with the descriptor; false when the socket is closed.
func (s *sendSocket) call(f func(fd uintptr)) bool {
	s.use.RLock()
	defer s.use.RUnlock()
	if s.closed {
		return false
	}
	f(uintptr(s.fd))
	return true
}

// write sends one datagram.
func (s *sendSocket) write(b []byte, addr netip.AddrPort) (int, error) {
	var sa unix.RawSockaddrInet6
	salen := s.putSockaddr(&sa, addr)
	var n uintptr
	var errno syscall.Errno
	ok := s.call(func(fd uintptr) {
		var p unsafe.Pointer
		if len(b) > 0 {
			p = unsafe.Pointer(&b[0])
		}
		for {
			n, _, errno = unix.Syscall6(unix.SYS_SENDTO, fd, uintptr(p), uintptr(len(b)), 0,
				uintptr(unsafe.Pointer(&sa)), uintptr(salen))
			if errno != syscall.EINTR {
				return
			}
		}
	})
	switch {
	case !ok:
		return 0, &net.OpError{Op: "write", Net: "udp", Err: net.ErrClosed}
	case errno != 0:
		return 0, &net.OpError{Op: "write", Net: "udp", Addr: net.UDPAddrFromAddrPort(addr), Err: os.NewSyscallError("sendto", errno)}
	}
	return int(n), nil
}

// send sends a batch with as few sendmmsg calls as the kernel allows.
func (s *sendSocket) send(b *batch) int {
	sb := &b.sys
	for i := range b.n {
		sb.iov[i].Base = &b.buf[i*batchSlot]
		sb.iov[i].SetLen(b.size[i])
		h := &sb.hdrs[i].hdr
		h.Iov, h.Iovlen = &sb.iov[i], 1
		h.Name = (*byte)(unsafe.Pointer(&sb.names[i]))
		h.Namelen = s.putSockaddr(&sb.names[i], b.to[i])
	}
	sb.n, sb.off, sb.failed = b.n, 0, 0
	if sb.write == nil {
		sb.write = sb.writeFD
	}
	if !s.call(sb.write) {
		return b.n
	}
	return sb.failed
}

// writeFD sends the batch's packets from off on.
func (sb *sysBatch) writeFD(fd uintptr) {
	for sb.off < sb.n {
		n, _, errno := unix.Syscall6(unix.SYS_SENDMMSG, fd,
			uintptr(unsafe.Pointer(&sb.hdrs[sb.off])), uintptr(sb.n-sb.off), 0, 0, 0)
		switch errno {
		case 0:
			sb.off += int(n)
		case syscall.EINTR:
		default:
			// The first packet left was refused (sendmmsg reports an error only when it
			// sent none): skip it, as a failed sendto would lose it.
			sb.failed++
			sb.off++
		}
	}
}

// putSockaddr writes addr into sa in the socket's family and returns its size. An IPv6
// destination on an IPv4 socket stays IPv6: the kernel refuses it (counted).
func (s *sendSocket) putSockaddr(sa *unix.RawSockaddrInet6, ap netip.AddrPort) uint32 {
	port := (*[2]byte)(unsafe.Pointer(&sa.Port))
	port[0], port[1] = byte(ap.Port()>>8), byte(ap.Port())
	addr := ap.Addr()
	if !s.inet6 && addr.Unmap().Is4() {
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		sa4.Family = unix.AF_INET
		sa4.Addr = addr.Unmap().As4()
		sa4.Zero = [8]uint8{}
		return unix.SizeofSockaddrInet4
	}
	sa.Family = unix.AF_INET6
	sa.Flowinfo = 0
	sa.Addr = addr.As16()
	sa.Scope_id = 0
	return unix.SizeofSockaddrInet6
}

// close closes the send socket once no call uses it.
func (s *sendSocket) close() error {
	s.use.Lock()
	defer s.use.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	if err := unix.Close(s.fd); err != nil {
		return os.NewSyscallError("close", err)
	}
	return nil
}
