package rtc

import (
	"fmt"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// listenUDP opens a receiving socket on network's loopback.
func listenUDP(t testing.TB, network, addr string) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP(network, net.UDPAddrFromAddrPort(netip.MustParseAddrPort(addr)))
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// loopbackConn is an edge connection on an IPv4 loopback port with the platform's fast writer
// (newBatchConn's fallback is an error here) and one sender, closed when the test ends.
func loopbackConn(t testing.TB) *batchConn { return shardedConn(t, 1) }

// listenEdge is an edge connection on network ("udp4", or "udp" for a dual-stack socket) at
// bind, with senders sender goroutines, closed when the test ends; the test is skipped where
// the machine has no dual-stack socket (IPv6 disabled).
func listenEdge(t *testing.T, network, bind string, senders int) *batchConn {
	t.Helper()
	udp, err := net.ListenUDP(network, net.UDPAddrFromAddrPort(netip.MustParseAddrPort(bind)))
	if err != nil && network == "udp" {
		t.Skipf("no dual-stack socket on this machine: %v", err)
	}
	require.NoError(t, err)
	c, err := newBatchConn(udp, senders)
	require.NoError(t, err, "the send socket")
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// shardedConn is loopbackConn with senders sender goroutines.
func shardedConn(t testing.TB, senders int) *batchConn {
	t.Helper()
	c, err := newBatchConn(listenUDP(t, "udp4", "127.0.0.1:0"), senders)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func addrOf(c *net.UDPConn) netip.AddrPort { return c.LocalAddr().(*net.UDPAddr).AddrPort() }

// recvN reads n datagrams from c, failing after a generous timeout.
func recvN(t *testing.T, c *net.UDPConn, n int) [][]byte {
	t.Helper()
	return collect(t, c, n)()
}

// collect starts reading n datagrams from c at once (so that the socket's buffer never
// overflows) and returns a function that waits for them.
func collect(t *testing.T, c *net.UDPConn, n int) func() [][]byte {
	t.Helper()
	require.NoError(t, c.SetReadDeadline(time.Now().Add(10*time.Second)))
	var got [][]byte
	var err error
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 2048)
		for len(got) < n {
			var k int
			if k, _, err = c.ReadFromUDP(buf); err != nil {
				return
			}
			got = append(got, append([]byte(nil), buf[:k]...))
		}
	}()
	return func() [][]byte {
		t.Helper()
		<-done
		require.NoError(t, err, "after %d of %d datagrams", len(got), n)
		return got
	}
}

func payload(i, size int) []byte {
	b := make([]byte, size)
	copy(b, fmt.Sprintf("packet %d", i))
	return b
}

func TestBatchConnCorkedWritesArriveInOrder(t *testing.T) {
	for _, tc := range []struct{ name, network, bind, recv string }{
		{"ipv4 socket", "udp4", "127.0.0.1:0", "127.0.0.1:0"},
		{"dual-stack socket to ipv4", "udp", "[::]:0", "127.0.0.1:0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := listenEdge(t, tc.network, tc.bind, 1)
			// 300 packets to three viewers (100 each, well within a socket's buffer even
			// unread): more than a batch holds, so a full batch is sent mid-cork.
			const n = 300
			var rs []*net.UDPConn
			var got []func() [][]byte
			for range 3 {
				r := listenUDP(t, "udp4", tc.recv)
				rs = append(rs, r)
				got = append(got, collect(t, r, n/3))
			}
			want := make([][][]byte, 3)
			c.Cork()
			for i := range n {
				p := payload(i, 100+i)
				ap := addrOf(rs[i%3])
				if tc.network == "udp" {
					ap = netip.AddrPortFrom(netip.AddrFrom16(ap.Addr().As16()), ap.Port()) // as pion gives it
				}
				k, err := c.WriteToAddrPort(p, ap)
				require.NoError(t, err)
				require.Equal(t, len(p), k)
				want[i%3] = append(want[i%3], p)
			}
			c.Uncork()
			for i := range rs {
				require.Equal(t, want[i], got[i]())
			}
			st := settled(t, c, func(st BatchStats) bool { return st.Packets == n })
			require.Equal(t, uint64(3), st.Batches) // 128 + 128 + 44
			require.Zero(t, st.SendErrors)
			require.Zero(t, st.Direct)
		})
	}
}

func TestBatchConnUncorkedAndOversizeWritesGoDirect(t *testing.T) {
	c := loopbackConn(t)
	r := listenUDP(t, "udp4", "127.0.0.1:0")
	small, big := payload(1, 200), payload(2, batchSlot+100)
	_, err := c.WriteTo(small, r.LocalAddr())
	require.NoError(t, err)
	c.Cork()
	_, err = c.WriteToAddrPort(big, addrOf(r)) // too big for a slot: sent at once even corked
	require.NoError(t, err)
	require.Equal(t, [][]byte{small, big}, recvN(t, r, 2))
	c.Uncork()
	require.Equal(t, BatchStats{Direct: 2}, c.Stats())

	_, err = c.WriteTo(small, &net.IPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.Error(t, err, "not a UDP address")
}

func TestBatchConnRefusedPacketIsCountedAndTheRestSent(t *testing.T) {
	c := loopbackConn(t)
	r := listenUDP(t, "udp4", "127.0.0.1:0")
	c.Cork()
	_, err := c.WriteToAddrPort(payload(1, 50), addrOf(r))
	require.NoError(t, err)
	// An IPv6 destination on an IPv4 socket: the kernel refuses this one packet.
	_, err = c.WriteToAddrPort(payload(2, 50), netip.MustParseAddrPort("[2001:db8::1]:9"))
	require.NoError(t, err)
	_, err = c.WriteToAddrPort(payload(3, 50), addrOf(r))
	require.NoError(t, err)
	c.Uncork()
	require.Equal(t, [][]byte{payload(1, 50), payload(3, 50)}, recvN(t, r, 2))
	st := settled(t, c, func(st BatchStats) bool { return st.Packets+st.SendErrors == 3 })
	require.Equal(t, uint64(1), st.SendErrors)
	require.Equal(t, uint64(2), st.Packets)
}

func TestBatchConnCloseSendsWhatIsQueued(t *testing.T) {
	c := loopbackConn(t)
	r := listenUDP(t, "udp4", "127.0.0.1:0")
	c.Cork()
	_, err := c.WriteToAddrPort(payload(1, 50), addrOf(r))
	require.NoError(t, err)
	require.NoError(t, c.Close())
	require.Equal(t, [][]byte{payload(1, 50)}, recvN(t, r, 1))
	_, err = c.WriteToAddrPort(payload(2, 50), addrOf(r))
	require.ErrorIs(t, err, net.ErrClosed)
	c.Uncork()
	require.Equal(t, BatchStats{Packets: 1, Batches: 1}, c.Stats())
}

// Corked fan-outs on several goroutines: every packet arrives, none twice.
func TestBatchConnConcurrentCorks(t *testing.T) {
	for _, senders := range []int{1, 3} {
		t.Run(fmt.Sprintf("senders=%d", senders), func(t *testing.T) { concurrentCorks(t, shardedConn(t, senders)) })
	}
}

func concurrentCorks(t *testing.T, c *batchConn) {
	// One viewer socket per writer, 100 small packets each: within its buffer even unread.
	const writers, rounds, per = 4, 10, 10
	var wg sync.WaitGroup
	var gots []func() [][]byte
	for range writers {
		r := listenUDP(t, "udp4", "127.0.0.1:0")
		gots = append(gots, collect(t, r, rounds*per))
		wg.Go(func() {
			for k := range rounds {
				c.Cork()
				for j := range per {
					_, _ = c.WriteToAddrPort(payload(k*per+j, 64), addrOf(r))
				}
				c.Uncork()
			}
		})
	}
	wg.Wait()
	for _, got := range gots {
		seen := map[string]bool{}
		for _, p := range got() {
			require.False(t, seen[string(p)])
			seen[string(p)] = true
		}
	}
	settled(t, c, func(st BatchStats) bool { return st.Packets == writers*rounds*per })
}

// With several senders, fan-out lanes (one goroutine per group of viewers, corking around
// each packet) write to viewers spread over every shard: each viewer gets all its packets
// in the order they were written, and Close sends what is still queued.
func TestBatchConnShardsKeepEachViewerInOrder(t *testing.T) {
	const senders, lanes, viewersPerLane, packets = 4, 3, 4, 60
	c := shardedConn(t, senders)
	var wg sync.WaitGroup
	var gots []func() [][]byte
	var wants [][][]byte
	shards := map[*shard]bool{}
	for range lanes {
		var dsts []netip.AddrPort
		for range viewersPerLane {
			r := listenUDP(t, "udp4", "127.0.0.1:0")
			gots = append(gots, collect(t, r, packets))
			dsts = append(dsts, addrOf(r))
			shards[c.shardFor(addrOf(r))] = true
			var want [][]byte
			for i := range packets {
				want = append(want, payload(i, 200+i))
			}
			wants = append(wants, want)
		}
		wg.Go(func() {
			for i := range packets {
				c.Cork()
				for _, d := range dsts {
					_, _ = c.WriteToAddrPort(payload(i, 200+i), d)
				}
				if i < packets-1 { // the last packet is left corked for Close to send
					c.Uncork()
				}
			}
		})
	}
	wg.Wait()
	require.NoError(t, c.Close())
	for i, got := range gots {
		require.Equal(t, wants[i], got(), "viewer %d", i)
	}
	require.Greater(t, len(shards), 1, "the viewers' ports all hashed to one shard")
	st := c.Stats()
	require.Equal(t, uint64(lanes*viewersPerLane*packets), st.Packets)
	require.Zero(t, st.Direct)
}

// shardFor spreads destinations evenly, whether they differ by address (the load tool's
// viewers: one port, an address each) or by port (viewers behind one NAT), and keeps each
// on one shard.
func TestShardForSpreads(t *testing.T) {
	one := &batchConn{shards: []*shard{{}}}
	require.Same(t, one.shards[0], one.shardFor(netip.MustParseAddrPort("10.0.0.1:5000")))
	for _, n := range []int{2, 3, 4} {
		c := &batchConn{shards: make([]*shard, n)}
		for i := range c.shards {
			c.shards[i] = &shard{}
		}
		for name, dst := range map[string]func(i int) netip.AddrPort{
			"by address": func(i int) netip.AddrPort {
				return netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, byte(i >> 8), byte(i)}), 50000)
			},
			"by port": func(i int) netip.AddrPort {
				return netip.AddrPortFrom(netip.MustParseAddr("203.0.113.7"), uint16(40000+i))
			},
			"ipv6": func(i int) netip.AddrPort {
				return netip.AddrPortFrom(netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 15: byte(i)}), uint16(30000+i))
			},
		} {
			count := map[*shard]int{}
			for i := range 200 {
				s := c.shardFor(dst(i))
				require.Same(t, s, c.shardFor(dst(i)))
				count[s]++
			}
			require.Len(t, count, n, "%s, %d shards", name, n)
			for _, k := range count {
				require.InDelta(t, 200/n, k, float64(200/n)/3, "%s, %d shards: %v", name, n, count)
			}
		}
	}
}

// settled waits for the sender to have counted what the test sent (a receiver can read a
// packet before the sender's system call returns and counts it) and returns the counters.
func settled(t *testing.T, c *batchConn, done func(BatchStats) bool) BatchStats {
	t.Helper()
	var st BatchStats
	require.Eventually(t, func() bool { st = c.Stats(); return done(st) }, 5*time.Second, time.Millisecond,
		"counters %+v", st)
	return st
}

func TestBatchConnCorkedWritesDoNotAllocate(t *testing.T) {
	c := loopbackConn(t)
	r := listenUDP(t, "udp4", "127.0.0.1:0")
	dst, p := addrOf(r), payload(0, 1200)
	allocs := testing.AllocsPerRun(100, func() {
		c.Cork()
		for range 10 {
			_, _ = c.WriteToAddrPort(p, dst)
		}
		c.Uncork()
	})
	require.Zero(t, allocs)
}

// BenchmarkEdgeWrite is one 1,200-byte packet written to 100 viewers' sockets on loopback
// (each drained by its own reader, as pion's would be), one system call each (direct) or
// corked into batches (corked) sent by one or two sender goroutines. The time includes the
// kernel's loopback delivery.
func BenchmarkEdgeWrite(b *testing.B) {
	for _, tc := range []struct {
		corked  bool
		senders int
	}{{false, 1}, {true, 1}, {true, 2}} {
		corked := tc.corked
		b.Run(fmt.Sprintf("viewers=100/corked=%v/senders=%d", corked, tc.senders), func(b *testing.B) {
			c := shardedConn(b, tc.senders)
			var dsts []netip.AddrPort
			var rs []*net.UDPConn
			var wg sync.WaitGroup
			defer func() {
				for _, r := range rs {
					_ = r.Close()
				}
				wg.Wait()
			}()
			for range 100 {
				r := listenUDP(b, "udp4", "127.0.0.1:0")
				rs = append(rs, r)
				dsts = append(dsts, addrOf(r))
				wg.Go(func() {
					buf := make([]byte, 2048)
					for {
						if _, _, err := r.ReadFromUDPAddrPort(buf); err != nil {
							return
						}
					}
				})
			}
			p := payload(0, 1200)
			b.SetBytes(int64(len(p) * len(dsts)))
			b.ReportAllocs()
			cpu0 := processCPU(b)
			for b.Loop() {
				if corked {
					c.Cork()
				}
				for _, d := range dsts {
					_, _ = c.WriteToAddrPort(p, d)
				}
				if corked {
					c.Uncork()
				}
			}
			// Wall time depends on how the two cores are shared; the CPU the whole process
			// (writer, kernel, readers) spent per packet does much less.
			if cpu := processCPU(b) - cpu0; cpu > 0 {
				b.ReportMetric(float64(cpu)/float64(b.N*len(dsts)), "cpu-ns/packet")
			}
		})
	}
}
