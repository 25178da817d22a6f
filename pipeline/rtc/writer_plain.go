package rtc

import (
	"net"
	"net/netip"
)

// plainWriter writes through the socket itself, a batch's packets one by one (still off the
// writers' goroutines): where there is no sendmmsg, or no send socket could be had.
type plainWriter struct{ conn *net.UDPConn }

func (w plainWriter) write(b []byte, addr netip.AddrPort) (int, error) {
	return w.conn.WriteToUDPAddrPort(b, addr)
}

func (w plainWriter) send(bs []*batch, _ *sendPlan) sendResult {
	var r sendResult
	for _, b := range bs {
		for i := range b.n {
			if _, err := w.conn.WriteToUDPAddrPort(b.packet(i), b.to[i]); err != nil {
				r.failed++
			}
		}
	}
	return r
}

func (plainWriter) gsoOn() bool { return false }

func (plainWriter) close() error { return nil }
