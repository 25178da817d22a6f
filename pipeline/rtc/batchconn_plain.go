//go:build !(linux && (amd64 || arm64))

package rtc

import "net"

// sysBatch is empty where packets are sent one write each.
type sysBatch struct{}

// plainSender writes a batch's packets one by one, still off the writers' goroutines.
type plainSender struct{ conn *net.UDPConn }

func newSender(conn *net.UDPConn) (sender, error) { return plainSender{conn: conn}, nil }

func (s plainSender) send(b *batch) int {
	failed := 0
	for i := range b.n {
		if _, err := s.conn.WriteToUDPAddrPort(b.packet(i), b.to[i]); err != nil {
			failed++
		}
	}
	return failed
}
