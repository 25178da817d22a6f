//go:build linux && (amd64 || arm64)

package rtc

import (
	"fmt"
	"net"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// sysBatch is a batch as sendmmsg(2) takes it: one message header, one iovec and one
// address per packet, pointing into the batch's own slots (filled before each send).
type sysBatch struct {
	hdrs  [batchSlots]mmsghdr
	iov   [batchSlots]syscall.Iovec
	names [batchSlots]syscall.RawSockaddrInet6

	// The send in progress: packets n, sent up to off, failed of them refused; write is
	// writeFD as a method value, made once so that sending allocates nothing.
	n, off, failed int
	write          func(fd uintptr) bool
}

// mmsghdr is struct mmsghdr on 64-bit Linux.
type mmsghdr struct {
	hdr syscall.Msghdr
	len uint32
	_   [4]byte
}

// mmsgSender sends a batch with as few sendmmsg calls as the kernel allows. It calls
// sendmmsg on the socket's descriptor itself rather than through the net package, whose
// write lock would let only one batch into the kernel at a time; only when the socket's
// buffer is full does it wait through the net package's poller. The batchConn keeps the
// descriptor open while a send runs.
type mmsgSender struct {
	raw   syscall.RawConn
	fd    uintptr
	inet6 bool // the socket is AF_INET6 (dual stack): IPv4 peers are written as ::ffff:a.b.c.d
}

func newSender(conn *net.UDPConn) (sender, error) {
	raw, err := conn.SyscallConn()
	if err != nil {
		return nil, err
	}
	var sa syscall.Sockaddr
	var serr error
	var sysfd uintptr
	if err := raw.Control(func(fd uintptr) { sysfd = fd; sa, serr = syscall.Getsockname(int(fd)) }); err != nil {
		return nil, err
	}
	if serr != nil {
		return nil, fmt.Errorf("getsockname: %w", serr)
	}
	_, inet6 := sa.(*syscall.SockaddrInet6)
	return &mmsgSender{raw: raw, fd: sysfd, inet6: inet6}, nil
}

func (s *mmsgSender) send(b *batch) int {
	sb := &b.sys
	for i := range b.n {
		sb.iov[i].Base = &b.buf[i*batchSlot]
		sb.iov[i].SetLen(b.size[i])
		h := &sb.hdrs[i].hdr
		h.Iov, h.Iovlen = &sb.iov[i], 1
		h.Name = (*byte)(unsafe.Pointer(&sb.names[i]))
		h.Namelen = s.putAddr(&sb.names[i], i, b)
	}
	sb.n, sb.off, sb.failed = b.n, 0, 0
	if sb.writeFD(s.fd) {
		return sb.failed
	}
	// The socket's buffer is full: wait for room through the poller.
	if sb.write == nil {
		sb.write = sb.writeFD
	}
	if err := s.raw.Write(sb.write); err != nil {
		sb.failed += sb.n - sb.off // the socket is closed: the rest is not sent
	}
	return sb.failed
}

// putAddr writes packet i's destination into sa in the socket's family and returns its size.
func (s *mmsgSender) putAddr(sa *syscall.RawSockaddrInet6, i int, b *batch) uint32 {
	ap := b.to[i]
	port := (*[2]byte)(unsafe.Pointer(&sa.Port))
	port[0], port[1] = byte(ap.Port()>>8), byte(ap.Port())
	addr := ap.Addr()
	if !s.inet6 && addr.Unmap().Is4() {
		sa4 := (*syscall.RawSockaddrInet4)(unsafe.Pointer(sa))
		sa4.Family = syscall.AF_INET
		sa4.Addr = addr.Unmap().As4()
		sa4.Zero = [8]uint8{}
		return syscall.SizeofSockaddrInet4
	}
	// An IPv6 destination on an IPv4 socket stays IPv6: the kernel refuses it (counted).
	sa.Family = syscall.AF_INET6
	sa.Flowinfo = 0
	sa.Addr = addr.As16()
	sa.Scope_id = 0
	return syscall.SizeofSockaddrInet6
}

// writeFD sends the batch's packets from off on; false when the socket cannot take more now
// (EAGAIN: the caller waits for room and calls again).
func (sb *sysBatch) writeFD(fd uintptr) bool {
	for sb.off < sb.n {
		n, _, errno := unix.Syscall6(unix.SYS_SENDMMSG, fd,
			uintptr(unsafe.Pointer(&sb.hdrs[sb.off])), uintptr(sb.n-sb.off), 0, 0, 0)
		switch errno {
		case 0:
			sb.off += int(n)
		case syscall.EAGAIN:
			return false
		case syscall.EINTR:
		default:
			// The first packet left was refused (sendmmsg reports an error only when it
			// sent none): skip it, as a failed sendto would lose it.
			sb.failed++
			sb.off++
		}
	}
	return true
}
