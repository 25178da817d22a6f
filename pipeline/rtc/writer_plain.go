package rtc

import (
	"net"
	"net/netip"
)

// plainWriter writes through the socket itself, a batch's packets one by one (still off the
// writers' goroutines): where there is no sendmmsg, or no send socket could be had. With src
// (a socket bound to every interface) each packet leaves from the address its peer sent to.
type plainWriter struct {
	conn *net.UDPConn
	src  *sources
}

func (w plainWriter) write(b []byte, addr netip.AddrPort) (int, error) {
	if w.src == nil {
		return w.conn.WriteToUDPAddrPort(b, addr)
	}
	var oob [pktinfoSpace / 8]uint64
	ctrl := oobOf(oob[:])
	w.src.mu.RLock()
	from, ok := w.src.lookup(addr)
	w.src.mu.RUnlock()
	if !ok {
		return w.conn.WriteToUDPAddrPort(b, addr)
	}
	n, _, err := w.conn.WriteMsgUDPAddrPort(b, ctrl[:putSource(ctrl, from, w.src.inet6)], addr)
	return n, err
}

func (w plainWriter) send(bs []*batch, _ *sendPlan) sendResult {
	var r sendResult
	for _, b := range bs {
		for i := range b.n {
			if _, err := w.write(b.packet(i), b.to[i]); err != nil {
				r.failed++
			}
		}
	}
	return r
}

func (plainWriter) gsoOn() bool { return false }

func (plainWriter) close() error { return nil }
