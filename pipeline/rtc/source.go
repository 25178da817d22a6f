package rtc

import (
	"net/netip"
	"sync"
	"time"
	"unsafe"
)

// source is a local address of the host that a datagram from a remote peer arrived at, and
// the interface it arrived on (needed to send from an IPv6 link-local address).
type source struct {
	addr    netip.Addr
	ifindex uint32
}

// sources remembers, for an edge socket bound to every interface (0.0.0.0 or ::), which of
// the host's addresses each remote peer last sent to, so that what the edge sends that peer
// leaves from that address. Without it the kernel picks the source by route, and a peer that
// reached the host on another of its addresses (a client on the same machine using the LAN
// address, a docker bridge, a second NIC) gets answers from an address it never sent to:
// ICE drops such a STUN response (RFC 8445 7.2.5.2.1, non-symmetric) and never connects.
//
// pion's UDP mux does not say which local candidate a write is for, so the address is the one
// the peer's latest datagram came to. A peer checks every pair, and during ICE one remote
// address may send to several of the host's addresses in a row; a response then risks the
// address of a check that arrived in between, which the peer retries. Once a pair is
// selected, the peer sends everything to one address.
//
// Entries expire: a peer not heard from for one to two sourceTTLs is forgotten (the maps
// are swapped, not swept), so the memory follows the peers of the last minutes.
type sources struct {
	inet6 bool // the socket is AF_INET6 (dual-stack: IPv4 addresses mapped)

	mu       sync.RWMutex
	cur, old map[netip.AddrPort]source
	swapped  time.Time
}

// sourceTTL is how long, at least, a peer's local address is remembered after its last
// datagram: longer than ICE consent checks (every 5 s) and RTCP intervals leave a live
// peer silent.
const sourceTTL = time.Minute

func newSources(inet6 bool, now time.Time) *sources {
	return &sources{inet6: inet6, cur: map[netip.AddrPort]source{}, old: map[netip.AddrPort]source{}, swapped: now}
}

// heard records that a datagram from remote arrived at local at now.
func (s *sources) heard(remote netip.AddrPort, local source, now time.Time) {
	remote = unmapped(remote)
	local.addr = local.addr.Unmap()
	s.mu.RLock()
	known, ok := s.cur[remote]
	fresh := now.Sub(s.swapped) < sourceTTL
	s.mu.RUnlock()
	if ok && known == local && fresh {
		return
	}
	s.mu.Lock()
	if now.Sub(s.swapped) >= sourceTTL {
		s.old, s.cur = s.cur, make(map[netip.AddrPort]source, len(s.cur))
		s.swapped = now
	}
	s.cur[remote] = local
	s.mu.Unlock()
}

// lookup is the local address to send to remote from; ok false when remote was not heard
// from lately (the kernel picks). The caller holds s.mu for reading.
func (s *sources) lookup(remote netip.AddrPort) (src source, ok bool) {
	remote = unmapped(remote)
	if src, ok = s.cur[remote]; ok {
		return src, true
	}
	src, ok = s.old[remote]
	return src, ok
}

// oobOf is a control message buffer's bytes: its words keep the headers aligned.
func oobOf(words []uint64) []byte {
	if len(words) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(&words[0])), len(words)*8)
}

func unmapped(a netip.AddrPort) netip.AddrPort {
	if a.Addr().Is4In6() {
		return netip.AddrPortFrom(a.Addr().Unmap(), a.Port())
	}
	return a
}
