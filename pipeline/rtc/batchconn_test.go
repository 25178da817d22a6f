package rtc

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"slices"
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
	c, err := newBatchConn(udp, senders, true, nil)
	require.NoError(t, err, "the send socket")
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// shardedConn is loopbackConn with senders sender goroutines.
func shardedConn(t testing.TB, senders int) *batchConn { return edgeConn(t, senders, true) }

// edgeConn is an edge connection on an IPv4 loopback port with senders sender goroutines and
// GSO asked for or not, closed when the test ends. The platform's fast writer must be had
// (newBatchConn's fallback is an error) and, asked for, GSO too: Linux 4.18 on, every machine
// this project runs CI on; elsewhere the test is skipped, loudly.
func edgeConn(t testing.TB, senders int, gso bool) *batchConn {
	t.Helper()
	c, fallback := newBatchConn(listenUDP(t, "udp4", "127.0.0.1:0"), senders, gso, nil)
	t.Cleanup(func() { _ = c.Close() })
	if gso && fallback != nil && (runtime.GOOS != "linux" || os.Getenv("CI") == "") {
		t.Skipf("SKIP (loud): this platform sends without UDP GSO: %v", fallback)
	}
	require.NoError(t, fallback)
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
			// 600 packets to six viewers (100 each, well within a socket's buffer even
			// unread): more than the batches hold, so full batches are queued and sent
			// mid-cork and the writer waits for the sender to free one.
			const n, viewers = 600, 6
			var rs []*net.UDPConn
			var got []func() [][]byte
			for range viewers {
				r := listenUDP(t, "udp4", tc.recv)
				rs = append(rs, r)
				got = append(got, collect(t, r, n/viewers))
			}
			want := make([][][]byte, viewers)
			c.Cork()
			for i := range n {
				p := payload(i, 100+i%1000)
				ap := addrOf(rs[i%viewers])
				if tc.network == "udp" {
					ap = netip.AddrPortFrom(netip.AddrFrom16(ap.Addr().As16()), ap.Port()) // as pion gives it
				}
				k, err := c.WriteToAddrPort(p, ap)
				require.NoError(t, err)
				require.Equal(t, len(p), k)
				want[i%viewers] = append(want[i%viewers], p)
			}
			c.Uncork()
			for i := range rs {
				require.Equal(t, want[i], got[i]())
			}
			st := settled(t, c, func(st BatchStats) bool { return st.Packets == n })
			// At least 4 x 128 + 88: full batches are queued mid-cork, and the sender may
			// take the one being filled too.
			require.GreaterOrEqual(t, st.Batches, uint64(5))
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
	require.Equal(t, BatchStats{Direct: 2}, counters(c))

	_, err = c.WriteTo(small, &net.IPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.Error(t, err, "not a UDP address")
}

// A destination the kernel refuses loses its own packets only, whether sent alone or (with
// GSO, two of the same size) as one message of segments, which is retried packet by packet.
func TestBatchConnRefusedPacketIsCountedAndTheRestSent(t *testing.T) {
	for _, gso := range []bool{false, true} {
		t.Run(fmt.Sprintf("gso=%v", gso), func(t *testing.T) {
			c := edgeConn(t, 1, gso)
			r := listenUDP(t, "udp4", "127.0.0.1:0")
			// An IPv6 destination on an IPv4 socket: the kernel refuses its packets.
			bad := netip.MustParseAddrPort("[2001:db8::1]:9")
			c.Cork()
			for i, dst := range []netip.AddrPort{addrOf(r), bad, addrOf(r), bad} {
				_, err := c.WriteToAddrPort(payload(i, 50), dst)
				require.NoError(t, err)
			}
			c.Uncork()
			require.Equal(t, [][]byte{payload(0, 50), payload(2, 50)}, recvN(t, r, 2))
			st := settled(t, c, func(st BatchStats) bool { return st.Packets+st.SendErrors == 4 })
			require.Equal(t, uint64(2), st.SendErrors)
			require.Equal(t, uint64(2), st.Packets)
			require.Equal(t, gso, st.GSO, "a refused destination does not turn GSO off")
		})
	}
}

// A viewer's packets queued together leave as messages of segments that the kernel splits
// back into the same packets: runs of one size, a smaller one ending a run, a bigger one
// starting the next, at most maxSegments packets or maxGSOBytes a message; every viewer
// gets its packets whole and in order, interleaved as a fan-out writes them.
func TestBatchConnCoalescesAViewersPackets(t *testing.T) {
	for _, tc := range []struct {
		name      string
		sizes     []int // one viewer's packets in order
		viewers   int
		coalesced int // of one viewer's packets
	}{
		// [1000 1000 1000 900] [1000] [1200 1200 1200]
		{"runs", []int{1000, 1000, 1000, 900, 1000, 1200, 1200, 1200}, 3, 7},
		// 64 + 16 segments
		{"segments bound", slices.Repeat([]int{100}, 80), 1, 80},
		// 1,400 bytes: 46 + 14 segments (65,000 bytes a message at most)
		{"bytes bound", slices.Repeat([]int{1400}, 60), 1, 60},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, gso := range []bool{false, true} {
				c := edgeConn(t, 1, gso)
				var dsts []netip.AddrPort
				var gots []func() [][]byte
				for range tc.viewers {
					r := listenUDP(t, "udp4", "127.0.0.1:0")
					dsts = append(dsts, addrOf(r))
					gots = append(gots, collect(t, r, len(tc.sizes)))
				}
				var want [][]byte
				c.Cork()
				for i, size := range tc.sizes {
					p := payload(i, size)
					want = append(want, p)
					for _, d := range dsts {
						_, err := c.WriteToAddrPort(p, d)
						require.NoError(t, err)
					}
				}
				c.Uncork()
				for v, got := range gots {
					require.Equal(t, want, got(), "gso %v, viewer %d", gso, v)
				}
				n := uint64(len(tc.sizes) * tc.viewers)
				st := settled(t, c, func(st BatchStats) bool { return st.Packets == n })
				require.Zero(t, st.SendErrors)
				require.Equal(t, gso, st.GSO)
				if gso {
					require.Equal(t, uint64(tc.coalesced*tc.viewers), st.Coalesced)
				} else {
					require.Zero(t, st.Coalesced)
				}
			}
		})
	}
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
	require.Equal(t, BatchStats{Packets: 1, Batches: 1}, counters(c))
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

// counters are c's counters without the GSO flag, which depends on the platform.
func counters(c *batchConn) BatchStats {
	st := c.Stats()
	st.GSO = false
	return st
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

// BenchmarkEdgeWrite is a video frame (7 packets of 1,200 bytes) written to 100 viewers'
// sockets on loopback (each drained by its own reader, as pion's would be), one system call
// a packet (direct) or, as a fan-out writes, corked around each packet's 100 writes and sent
// in batches by one or two sender goroutines, with or without UDP GSO. The time includes the
// kernel's loopback delivery.
func BenchmarkEdgeWrite(b *testing.B) {
	const viewers, frame = 100, 7
	for _, tc := range []struct {
		corked, gso bool
		senders     int
		// anyAddr binds the edge to every interface (the default), each viewer's packets
		// sent from the address it was heard on.
		anyAddr bool
	}{{false, false, 1, false}, {true, false, 1, false}, {true, false, 2, false}, {true, true, 1, false}, {true, true, 2, false},
		{true, false, 1, true}, {true, true, 1, true}} {
		corked := tc.corked
		name := fmt.Sprintf("viewers=%d/corked=%v/senders=%d/gso=%v", viewers, corked, tc.senders, tc.gso)
		if tc.anyAddr {
			name += "/bound=any"
		}
		b.Run(name, func(b *testing.B) {
			c := edgeConn(b, tc.senders, tc.gso)
			if tc.anyAddr {
				c = anyAddrConn(b, tc.senders, tc.gso)
			}
			var dsts []netip.AddrPort
			var rs []*net.UDPConn
			var wg sync.WaitGroup
			defer func() {
				for _, r := range rs {
					_ = r.Close()
				}
				wg.Wait()
			}()
			for range viewers {
				r := listenUDP(b, "udp4", "127.0.0.1:0")
				require.NoError(b, r.SetReadBuffer(1<<20))
				rs = append(rs, r)
				dsts = append(dsts, addrOf(r))
				if c.src != nil {
					c.src.heard(addrOf(r), source{addr: netip.MustParseAddr("127.0.0.1")}, time.Now())
				}
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
			b.SetBytes(int64(len(p) * viewers * frame))
			b.ReportAllocs()
			cpu0 := processCPU(b)
			st0 := c.Stats()
			for b.Loop() {
				for range frame {
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
			}
			// Wall time depends on how the two cores are shared; the CPU the whole process
			// (writer, kernel, readers) spent per packet does much less.
			packets := float64(b.N * viewers * frame)
			if cpu := processCPU(b) - cpu0; cpu > 0 {
				b.ReportMetric(float64(cpu)/packets, "cpu-ns/packet")
			}
			b.ReportMetric(float64(c.Stats().Coalesced-st0.Coalesced)/packets, "coalesced/packet")
		})
	}
}

// anyAddrConn is edgeConn bound to every interface (0.0.0.0), where the platform tells each
// datagram's local address; elsewhere the benchmark is skipped, loudly.
func anyAddrConn(b *testing.B, senders int, gso bool) *batchConn {
	b.Helper()
	c, fallback := newBatchConn(listenUDP(b, "udp4", "0.0.0.0:0"), senders, gso, nil)
	b.Cleanup(func() { _ = c.Close() })
	if fallback != nil || c.src == nil {
		b.Skipf("SKIP (loud): no packet info or fast path here: %v", fallback)
	}
	return c
}
