package rtc

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
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

// TestEdgeRepliesFromTheAddressPeersSentTo: an edge bound to every interface answers a peer
// from the local address the peer sent to, whichever write path a packet takes (at once,
// corked in a batch, as segments of one message, too big for a slot; with or without GSO;
// the plain writer of platforms without sendmmsg), and follows the peer when it moves to
// another address. 127.0.0.2 and 127.0.0.3 are addresses of this host (all of 127/8 is)
// whose route's source is 127.0.0.1, so the kernel's own choice would fail the check.
func TestEdgeRepliesFromTheAddressPeersSentTo(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("SKIP (loud): the edge knows a datagram's local address on Linux only")
	}
	for _, tc := range []struct {
		name, network, bind string
		gso, plain          bool
	}{
		{"ipv4", "udp4", "0.0.0.0:0", true, false},
		{"ipv4 no gso", "udp4", "0.0.0.0:0", false, false},
		{"ipv4 plain writer", "udp4", "0.0.0.0:0", false, true},
		{"dual-stack", "udp", "[::]:0", true, false},
		{"dual-stack plain writer", "udp", "[::]:0", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			udp, err := net.ListenUDP(tc.network, net.UDPAddrFromAddrPort(netip.MustParseAddrPort(tc.bind)))
			if err != nil && tc.network == "udp" {
				t.Skipf("SKIP (loud): no dual-stack socket on this machine: %v", err)
			}
			require.NoError(t, err)
			c, fallback := newBatchConn(udp, 1, tc.gso, nil)
			t.Cleanup(func() { _ = c.Close() })
			if tc.gso && fallback != nil && os.Getenv("CI") == "" {
				t.Skipf("SKIP (loud): %v", fallback)
			}
			require.NoError(t, fallback)
			require.NotNil(t, c.src, "an edge bound to every interface tracks its peers' local addresses")
			if tc.plain {
				require.NoError(t, c.out.close())
				c.out = plainWriter{conn: c.conn, src: c.src}
			}
			port := uint16(c.LocalAddr().(*net.UDPAddr).Port)
			peer := listenUDP(t, "udp4", "127.0.0.1:0")
			buf := make([]byte, 4096)

			for _, local := range []string{"127.0.0.2", "127.0.0.3"} {
				to := netip.AddrPortFrom(netip.MustParseAddr(local), port)
				_, err := peer.WriteToUDPAddrPort([]byte("hello"), to)
				require.NoError(t, err)
				require.NoError(t, c.SetReadDeadline(time.Now().Add(5*time.Second)))
				_, from, err := c.ReadFromAddrPort(buf)
				require.NoError(t, err)
				require.Equal(t, addrOf(peer).Port(), from.Port())

				sent := [][]byte{payload(0, 100)} // at once
				_, err = c.WriteToAddrPort(sent[0], addrOf(peer))
				require.NoError(t, err)
				c.Cork() // three of one size (segments of one message with GSO), one too big for a slot
				for i, size := range []int{1000, 1000, 1000, batchSlot + 10} {
					sent = append(sent, payload(i+1, size))
					_, err = c.WriteToAddrPort(sent[i+1], addrOf(peer))
					require.NoError(t, err)
				}
				c.Uncork()
				got := 0
				for got < len(sent) {
					require.NoError(t, peer.SetReadDeadline(time.Now().Add(5*time.Second)))
					n, src, err := peer.ReadFromUDPAddrPort(buf)
					require.NoError(t, err, "after %d of %d replies", got, len(sent))
					require.Equal(t, to, netip.AddrPortFrom(src.Addr().Unmap(), src.Port()),
						"reply %q… comes from the address the peer sent to", buf[:min(n, 10)])
					got++
				}
			}
			if !tc.plain { // the fast writer stays allocation-free with a source to set
				small := payload(9, 100)
				allocs := testing.AllocsPerRun(50, func() {
					_, _ = c.WriteToAddrPort(small, addrOf(peer))
					c.Cork()
					_, _ = c.WriteToAddrPort(small, addrOf(peer))
					c.Uncork()
				})
				require.Zero(t, allocs)
			}
		})
	}
}

// TestSourcesForgetSilentPeers: a peer's local address is kept for one to two TTLs after
// its last datagram, and a peer that moves is followed at once.
func TestSourcesForgetSilentPeers(t *testing.T) {
	t0 := time.Unix(1000, 0)
	s := newSources(false, t0)
	a, b := netip.MustParseAddrPort("192.0.2.9:5000"), netip.MustParseAddrPort("192.0.2.10:5000")
	here := source{addr: netip.MustParseAddr("192.0.2.2")}
	there := source{addr: netip.MustParseAddr("10.0.0.2")}
	lookup := func(p netip.AddrPort) (source, bool) {
		s.mu.RLock()
		defer s.mu.RUnlock()
		return s.lookup(p)
	}

	s.heard(a, here, t0)
	got, ok := lookup(netip.MustParseAddrPort("[::ffff:192.0.2.9]:5000"))
	require.True(t, ok, "a mapped address is the same peer")
	require.Equal(t, here, got)
	s.heard(a, there, t0.Add(time.Second))
	got, _ = lookup(a)
	require.Equal(t, there, got, "the peer's latest address")

	s.heard(b, here, t0.Add(sourceTTL+time.Second)) // swaps: a is old, still known
	_, ok = lookup(a)
	require.True(t, ok)
	s.heard(b, here, t0.Add(2*sourceTTL+2*time.Second)) // swaps again: a is forgotten
	_, ok = lookup(a)
	require.False(t, ok, "silent for two TTLs")
	_, ok = lookup(b)
	require.True(t, ok)
}
