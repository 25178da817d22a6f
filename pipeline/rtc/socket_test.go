package rtc

import (
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestEdgeReceivesEverything: the edge's writes leave from a second socket on the same port
// (Linux), and every datagram sent to the port still reaches the edge's own socket, whatever
// the sender's address (the kernel would spread them over both by hash without the steering
// program); replies come from the edge's port.
func TestEdgeReceivesEverything(t *testing.T) {
	for _, tc := range []struct{ network, bind string }{
		{"udp4", "127.0.0.1:0"},
		{"udp", "[::]:0"},
	} {
		t.Run(tc.network, func(t *testing.T) {
			c := listenEdge(t, tc.network, tc.bind, 2)
			edge := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(c.LocalAddr().(*net.UDPAddr).Port))

			// 32 senders (32 source ports: 32 different hashes), 20 datagrams each.
			const senders, each = 32, 20
			var peers []*net.UDPConn
			for range senders {
				peers = append(peers, listenUDP(t, "udp4", "127.0.0.1:0"))
			}
			got := map[string]netip.AddrPort{}
			done := make(chan error, 1)
			go func() {
				buf := make([]byte, 1500)
				for len(got) < senders*each {
					if err := c.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
						done <- err
						return
					}
					n, from, err := c.ReadFromAddrPort(buf)
					if err != nil {
						done <- fmt.Errorf("after %d of %d: %w", len(got), senders*each, err)
						return
					}
					got[string(buf[:n])] = from
				}
				done <- nil
			}()
			for k := range each {
				for i, p := range peers {
					_, err := p.WriteToUDPAddrPort(fmt.Appendf(nil, "%d-%d", i, k), edge)
					require.NoError(t, err)
				}
				time.Sleep(time.Millisecond) // stay within the socket's buffer
			}
			require.NoError(t, <-done)
			require.Equal(t, addrOf(peers[3]).Port(), got["3-7"].Port())

			// Replies, direct and batched, come from the edge's port.
			_, err := c.WriteToAddrPort([]byte("direct"), addrOf(peers[0]))
			require.NoError(t, err)
			c.Cork()
			for _, p := range peers[:2] {
				_, err = c.WriteToAddrPort([]byte("batched"), addrOf(p))
				require.NoError(t, err)
			}
			c.Uncork()
			buf := make([]byte, 64)
			for i, want := range []string{"direct", "batched"} {
				require.NoError(t, peers[0].SetReadDeadline(time.Now().Add(5*time.Second)))
				n, from, err := peers[0].ReadFromUDPAddrPort(buf)
				require.NoError(t, err, "reply %d", i)
				require.Equal(t, want, string(buf[:n]))
				require.Equal(t, edge.Port(), from.Port(), "sent from the edge's port")
			}
			require.NoError(t, c.Close())
			_, err = c.WriteToAddrPort([]byte("late"), addrOf(peers[0]))
			require.ErrorIs(t, err, net.ErrClosed)
		})
	}
}

// TestEdgePortStaysExclusive: opening the send socket does not let another server bind the
// edge's port.
func TestEdgePortStaysExclusive(t *testing.T) {
	c := loopbackConn(t)
	_, err := net.ListenUDP("udp4", c.LocalAddr().(*net.UDPAddr))
	require.Error(t, err, "a second socket on the edge's port")
}
