//go:build linux && (amd64 || arm64)

package rtc

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// sendPlan is what a sender hands sendmmsg(2): one message header, address and iovec range
// per message, pointing into the batches being sent. It is the sender goroutine's own, reused
// for every send, so that sending allocates nothing.
//
// With UDP GSO (generic segmentation offload) on, a destination's packets among those taken
// are gathered into one message of several segments, in their order: the kernel routes and
// builds one datagram and splits it into the packets on the way out (by the NIC, or in
// software just before the device; on loopback at the receiving socket). Per packet that is
// about a third of the kernel's CPU of sending each alone (measured on this project's 2-core
// VM: 3.4 -> 1.1 µs a 1,200-byte packet, and the receivers' side too: 3.4 -> 1.4 µs).
type sendPlan struct {
	hdrs  [planSlots]mmsghdr
	iov   [planSlots]syscall.Iovec
	names [planSlots]unix.RawSockaddrInet6
	ctrl  [planSlots]msgControl
	srcn  [planSlots]int32 // the length of each message's source control message (0: none)
	first [planSlots]int32 // each message's first iovec
	segs  [planSlots]int32 // each message's packets

	// The packets taken, in the order they were written, and their grouping by destination:
	// next links a destination's packets, head and tail are each of the ngroups groups'
	// ends, found by destination in an open-addressing table whose entries of an earlier
	// send are told apart by gen (no clearing between sends).
	pkts       [planSlots][]byte
	dst        [planSlots]*netip.AddrPort
	next       [planSlots]int32
	head, tail [planSlots]int32
	ngroups    int32
	table      [groupTable]groupEntry
	gen        uint32

	// The send in progress: messages n, sent up to off; failed packets were refused,
	// coalesced went out in messages of several; refusedGSO is set when the kernel refused
	// segmentation itself (EIO: the device cannot checksum). write is writeFD as a method
	// value, made once.
	n, off, failed, coalesced int
	refusedGSO                bool
	write                     func(fd uintptr)
}

// planSlots is the most packets one send takes: every batch queued for a sender and the
// one being filled.
const planSlots = (batchesQueued + 1) * batchSlots

// groupTable is the size of the destinations' table: a power of two, at least twice the
// destinations of a send, so that probes stay short.
const (
	groupBits  = 11
	groupTable = 1 << groupBits
)

// The table has room to spare for every packet of a send being to another destination.
var _ [groupTable - 2*planSlots]struct{}

// groupEntry is a destination's group in the send of generation gen.
type groupEntry struct {
	dst netip.AddrPort
	gen uint32
	g   int32
}

// maxSegments and maxGSOBytes bound one message of segments: the kernel's UDP_MAX_SEGMENTS
// (64 before Linux 6.6) and a datagram's 16-bit length, less its headers.
const (
	maxSegments = 64
	maxGSOBytes = 65000
)

// msgControl is a message's control messages: the source address it leaves from (on a
// socket bound to every interface), then UDP_SEGMENT and the segment size (a message of
// segments). Words keep the headers aligned.
type msgControl [(pktinfoSpace + gsoSpace) / 8]uint64

// gsoSpace is CMSG_SPACE(2), the room of a UDP_SEGMENT control message.
const gsoSpace = 24

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

	// gso is whether sends gather a destination's packets into segmented messages: asked
	// for, offered by the kernel (UDP_SEGMENT, Linux 4.18), and not yet refused by it.
	gso atomic.Bool

	// src, on a socket bound to every interface, is the local address to send each peer's
	// packets from.
	src *sources
}

// steerToFirst is the reuseport program, "ret #0": every datagram to socket 0 of the group.
var steerToFirst = []unix.SockFilter{{Code: unix.BPF_RET | unix.BPF_K, K: 0}}

// newWriter opens the send socket beside conn, sending with UDP GSO if gso is set and the
// kernel has it (noGSO says why not when it was asked for), and from the addresses src
// remembers if it is not nil.
func newWriter(conn *net.UDPConn, gso bool, src *sources) (w writer, noGSO, err error) {
	raw, err := conn.SyscallConn()
	if err != nil {
		return nil, nil, fmt.Errorf("rtc: send socket: %w", err)
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
		return nil, nil, fmt.Errorf("rtc: send socket: %w", firstErr(cerr, serr))
	}
	fd, err := unix.Socket(family, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("rtc: send socket: %w", err)
	}
	fail := func(what string, err error) (writer, error, error) {
		_ = unix.Close(fd)
		_ = raw.Control(func(s uintptr) { _ = unix.SetsockoptInt(int(s), unix.SOL_SOCKET, unix.SO_REUSEPORT, 0) })
		return nil, nil, fmt.Errorf("rtc: send socket: %s: %w", what, err)
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
	s := &sendSocket{fd: fd, inet6: family == unix.AF_INET6, src: src}
	if gso {
		// Setting the socket's default segment size to 0 (none) is a no-op that only a
		// kernel with UDP GSO accepts.
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_UDP, unix.UDP_SEGMENT, 0); err != nil {
			noGSO = fmt.Errorf("rtc: no UDP GSO on this kernel: %w", os.NewSyscallError("setsockopt UDP_SEGMENT", err))
		} else {
			s.gso.Store(true)
		}
	}
	return s, noGSO, nil
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
	var ctrl msgControl
	var iov syscall.Iovec
	var h syscall.Msghdr
	if s.src != nil {
		s.src.mu.RLock()
		from, ok := s.src.lookup(addr)
		s.src.mu.RUnlock()
		if ok {
			iov = iovecOf(b)
			h.Name, h.Namelen = (*byte)(unsafe.Pointer(&sa)), salen
			h.Iov, h.Iovlen = &iov, 1
			h.Control = (*byte)(unsafe.Pointer(&ctrl))
			h.SetControllen(putSource(oobOf(ctrl[:]), from, s.inet6))
		}
	}
	var n uintptr
	var errno syscall.Errno
	ok := s.call(func(fd uintptr) {
		var p unsafe.Pointer
		if len(b) > 0 {
			p = unsafe.Pointer(&b[0])
		}
		for {
			if h.Control != nil {
				n, _, errno = unix.Syscall(unix.SYS_SENDMSG, fd, uintptr(unsafe.Pointer(&h)), 0)
			} else {
				n, _, errno = unix.Syscall6(unix.SYS_SENDTO, fd, uintptr(p), uintptr(len(b)), 0,
					uintptr(unsafe.Pointer(&sa)), uintptr(salen))
			}
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

// send sends the batches' packets with as few sendmmsg calls as the kernel allows, each
// destination's in the order they were written.
func (s *sendSocket) send(bs []*batch, p *sendPlan) sendResult {
	np := 0
	for _, b := range bs {
		for i := range b.n {
			p.pkts[np], p.dst[np] = b.packet(i), &b.to[i]
			np++
		}
	}
	p.n, p.off, p.failed, p.coalesced, p.refusedGSO = 0, 0, 0, 0, false
	if s.src != nil { // read by open, message by message
		s.src.mu.RLock()
	}
	iv := 0
	if s.gso.Load() {
		p.group(np)
		for g := range p.ngroups {
			for k := p.head[g]; k >= 0; {
				k = p.segment(s, k, iv)
				iv += int(p.segs[p.n-1])
			}
		}
	} else {
		for k := range np {
			p.open(s, k, iv)
			iv++
		}
	}
	if s.src != nil {
		s.src.mu.RUnlock()
	}
	if p.write == nil {
		p.write = p.writeFD
	}
	if !s.call(p.write) {
		return sendResult{failed: np}
	}
	if p.refusedGSO {
		s.gso.Store(false)
	}
	return sendResult{failed: p.failed, coalesced: p.coalesced}
}

// group links the first np packets by destination, destinations in the order of their
// first packet.
func (p *sendPlan) group(np int) {
	p.gen++
	if p.gen == 0 { // wrapped: entries of generation 0 would look current
		p.table = [groupTable]groupEntry{}
		p.gen = 1
	}
	p.ngroups = 0
	for k := range int32(np) {
		p.next[k] = -1
		dst := *p.dst[k]
		for i := addrHash(dst) >> (32 - groupBits); ; i = (i + 1) % groupTable {
			e := &p.table[i]
			if e.gen != p.gen {
				g := p.ngroups
				p.ngroups++
				*e = groupEntry{dst: dst, gen: p.gen, g: g}
				p.head[g], p.tail[g] = k, k
				break
			}
			if e.dst == dst {
				p.next[p.tail[e.g]] = k
				p.tail[e.g] = k
				break
			}
		}
	}
}

// segment makes the next message from packet k and those after it to the same destination
// that can ride with it as segments (the same size, or a smaller last one, within the
// kernel's bounds) and returns the packet after them (-1: none), iv the message's first iovec.
func (p *sendPlan) segment(s *sendSocket, k int32, iv int) int32 {
	m := p.open(s, int(k), iv)
	size := len(p.pkts[k])
	total := size
	for k = p.next[k]; k >= 0 && size > 0 && p.segs[m] < maxSegments; k = p.next[k] {
		n := len(p.pkts[k])
		if n > size || total+n > maxGSOBytes {
			break
		}
		p.iov[iv+int(p.segs[m])] = iovecOf(p.pkts[k])
		p.segs[m]++
		total += n
		if n < size { // a short segment ends the message
			k = p.next[k]
			break
		}
	}
	if segs := int(p.segs[m]); segs > 1 {
		h := &p.hdrs[m].hdr
		h.Iovlen = uint64(segs)
		b := oobOf(p.ctrl[m][:])
		at := int(p.srcn[m])
		c := (*unix.Cmsghdr)(unsafe.Pointer(&b[at]))
		c.Level, c.Type = unix.IPPROTO_UDP, unix.UDP_SEGMENT
		c.SetLen(unix.CmsgLen(2))
		*(*uint16)(unsafe.Pointer(&b[at+unix.CmsgLen(0)])) = uint16(size)
		h.Control = &b[0]
		h.SetControllen(at + gsoSpace)
		p.coalesced += segs
	}
	return k
}

// open starts message p.n with packet k alone, at iovec iv, and returns its index.
func (p *sendPlan) open(s *sendSocket, k, iv int) int {
	m := p.n
	p.n++
	p.iov[iv] = iovecOf(p.pkts[k])
	h := &p.hdrs[m].hdr
	h.Iov, h.Iovlen = &p.iov[iv], 1
	h.Name = (*byte)(unsafe.Pointer(&p.names[m]))
	h.Namelen = s.putSockaddr(&p.names[m], *p.dst[k])
	h.Control = nil
	h.SetControllen(0)
	p.srcn[m] = 0
	if s.src != nil { // (s.src.mu read-held by send)
		if from, ok := s.src.lookup(*p.dst[k]); ok {
			b := oobOf(p.ctrl[m][:])
			p.srcn[m] = int32(putSource(b, from, s.inet6))
			h.Control = &b[0]
			h.SetControllen(int(p.srcn[m]))
		}
	}
	p.first[m], p.segs[m] = int32(iv), 1
	return m
}

func iovecOf(b []byte) syscall.Iovec {
	var v syscall.Iovec
	if len(b) > 0 {
		v.Base = &b[0]
		v.SetLen(len(b))
	}
	return v
}

// gsoOn reports whether sends coalesce.
func (s *sendSocket) gsoOn() bool { return s.gso.Load() }

// writeFD sends the plan's messages from off on.
func (p *sendPlan) writeFD(fd uintptr) {
	for p.off < p.n {
		n, _, errno := unix.Syscall6(unix.SYS_SENDMMSG, fd,
			uintptr(unsafe.Pointer(&p.hdrs[p.off])), uintptr(p.n-p.off), 0, 0, 0)
		switch errno {
		case 0:
			p.off += int(n)
		case syscall.EINTR:
		default:
			// The first message left was refused (sendmmsg reports an error only when it
			// sent none): skip it, as a failed sendto would lose it. A message of segments
			// is sent again packet by packet first, since the refusal may be of the
			// segmentation (EIO: no checksum offload on the route's device, which turns
			// GSO off; EINVAL: segments bigger than the route's MTU).
			m := p.off
			if segs := int(p.segs[m]); segs > 1 {
				p.refusedGSO = p.refusedGSO || errno == syscall.EIO
				p.coalesced -= segs
				p.failed += p.sendEach(fd, m)
			} else {
				p.failed++
			}
			p.off++
		}
	}
}

// sendEach sends message m's segments one datagram each, from the message's source, and
// returns how many were refused.
func (p *sendPlan) sendEach(fd uintptr, m int) int {
	failed := 0
	h := p.hdrs[m].hdr // the message without UDP_SEGMENT, one segment at a time
	h.Iovlen = 1
	h.SetControllen(int(p.srcn[m]))
	if p.srcn[m] == 0 {
		h.Control = nil
	}
	for i := range p.segs[m] {
		h.Iov = &p.iov[p.first[m]+i]
		for {
			_, _, errno := unix.Syscall(unix.SYS_SENDMSG, fd, uintptr(unsafe.Pointer(&h)), 0)
			if errno == syscall.EINTR {
				continue
			}
			if errno != 0 {
				failed++
			}
			break
		}
	}
	return failed
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
