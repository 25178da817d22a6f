package rtc

import (
	"bytes"
	"encoding/binary"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/srtp/v3"
	"github.com/pion/webrtc/v4"
	"github.com/stretchr/testify/require"
)

// sink is an RTPSender that keeps copies of what it was sent.
type sink struct {
	mu   sync.Mutex
	pkts [][]byte
}

func (s *sink) Send(pkt []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pkts = append(s.pkts, bytes.Clone(pkt))
	return nil
}

func (s *sink) seqs() []uint16 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []uint16
	for _, p := range s.pkts {
		out = append(out, binary.BigEndian.Uint16(p[2:4]))
	}
	return out
}

// A fast-ingest publisher's RTP reaches its sender through the socket reader, decrypted,
// with every packet once; what pion's receive interceptors did still happens: the peer gets
// receiver reports that count the fast path's packets and a NACK for one it never sent.
func TestFastIngestPublisher(t *testing.T) {
	edge, err := NewEdge(Config{UDPListen: "127.0.0.1:0", BWE: BWEConfig{Off: true}, FastIngest: true})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, edge.Close()) })
	node, fi, err := edge.NewPublisher()
	require.NoError(t, err)
	require.NotNil(t, fi)
	p := &keyedPair{edge: edge, node: node, peerGot: make(chan *webrtc.TrackRemote, 1)}
	p.peer, err = peerAPI(nil).NewPeerConnection(webrtc.Configuration{})
	require.NoError(t, err)
	p.peerTrack, err = webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8}, "v", "s")
	require.NoError(t, err)
	peerSender, err := p.peer.AddTrack(p.peerTrack)
	require.NoError(t, err)

	dst := &sink{}
	var counters RTPCounters
	var readers sync.WaitGroup
	published := make(chan error, 1)
	node.OnTrack(func(tr *webrtc.TrackRemote, rcv *webrtc.RTPReceiver) {
		one, err := fi.Publish(node, tr.SSRC(), dst, nil, &counters)
		published <- err
		readers.Go(func() { ReadPublisherRTCP(rcv, "") })
		ReadRTP(tr, one, nil, &counters)
	})
	t.Cleanup(func() {
		require.NoError(t, p.peer.Close())
		fi.Close()
		require.NoError(t, node.Close())
		readers.Wait()
	})
	p.connect(t)

	// Until the track is published pion has the packets (OnTrack needs the first).
	seq := uint16(1000)
	send := func() {
		seq++
		require.NoError(t, p.peerTrack.WriteRTP(testPacket(0, seq, []byte{byte(seq), 1, 2, 3})))
	}
	require.Eventually(t, func() bool {
		send()
		select {
		case err := <-published:
			require.NoError(t, err)
			return true
		default:
			return false
		}
	}, 5*time.Second, 10*time.Millisecond)

	// Then the fast path: 100 packets, one seq skipped (never sent: a loss to NACK).
	const lost = 1100
	for range 100 {
		if seq+1 == lost {
			seq++
		}
		send()
		time.Sleep(time.Millisecond)
	}
	require.Eventually(t, func() bool { return edge.FastIngestStats().Packets >= 95 }, 5*time.Second, 10*time.Millisecond,
		"the fast path took the packets: %+v", edge.FastIngestStats())
	require.Eventually(t, func() bool {
		s := dst.seqs()
		return len(s) > 0 && s[len(s)-1] == seq
	}, 5*time.Second, 10*time.Millisecond)
	got := dst.seqs()
	require.NotContains(t, got, uint16(lost))
	sorted := slices.Clone(got)
	slices.Sort(sorted)
	require.Equal(t, len(sorted), len(slices.Compact(sorted)), "each packet sent on once")
	require.Equal(t, uint64(len(got)), counters.Packets.Load())
	require.Zero(t, edge.FastIngestStats().Refused)
	dst.mu.Lock()
	last := dst.pkts[len(dst.pkts)-1]
	dst.mu.Unlock()
	require.Equal(t, []byte{byte(seq), 1, 2, 3}, last[len(last)-4:], "the payload decrypted")

	// The peer hears about them: a NACK for the lost packet, a receiver report up to the last.
	var nacked, reported bool
	require.NoError(t, peerSender.SetReadDeadline(time.Now().Add(5*time.Second)))
	for !nacked || !reported {
		pkts, _, err := peerSender.ReadRTCP()
		require.NoError(t, err, "nacked %v, reported %v", nacked, reported)
		for _, pkt := range pkts {
			switch x := pkt.(type) {
			case *rtcp.TransportLayerNack:
				for _, n := range x.Nacks {
					nacked = nacked || slices.Contains(n.PacketList(), lost)
				}
			case *rtcp.ReceiverReport:
				for _, r := range x.Reports {
					reported = reported || uint16(r.LastSequenceNumber) == seq
				}
			}
		}
	}
}

// fastFixture is a FastIngest with known keys and one published stream whose chain is
// pion's NACK generator and receiver-report interceptors, as the edge registers them,
// behind the inner tap; protect makes what its peer would send.
type fastFixture struct {
	f       *FastIngest
	dst     *sink
	protect *srtp.Context
	buf     []byte
}

const fixtureSSRC = 0x11223344

func newFastFixture(t testing.TB) *fastFixture {
	keying := SRTPKeying{Profile: srtp.ProtectionProfileAes128CmHmacSha1_80,
		ClientKey: bytes.Repeat([]byte{1}, 16), ClientSalt: bytes.Repeat([]byte{2}, 14)}
	f := &FastIngest{keys: &SRTPKeys{}, counts: &fastCounts{}}
	var err error
	f.ctx, err = keying.PeerContext()
	require.NoError(t, err)
	_, edgeInterceptors, err := newBaseEngine()
	require.NoError(t, err)
	ir := &interceptor.Registry{}
	ir.Add(tapFactory{f: f})
	ir.Add(chainFactory{edgeInterceptors})
	ir.Add(tapFactory{f: f, outer: true})
	chain, err := ir.Build("fixture")
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, chain.Close()) })
	chain.BindRTCPWriter(interceptor.RTCPWriterFunc(func([]rtcp.Packet, interceptor.Attributes) (int, error) { return 0, nil }))
	chain.BindRemoteStream(&interceptor.StreamInfo{SSRC: fixtureSSRC, ClockRate: 90000,
		RTCPFeedback: []interceptor.RTCPFeedback{{Type: "nack"}}},
		interceptor.RTPReaderFunc(func([]byte, interceptor.Attributes) (int, interceptor.Attributes, error) {
			t.Error("the fast path read pion's stream")
			return 0, nil, nil
		}))
	dst := &sink{}
	f.mu.Lock()
	f.publishLocked(fixtureSSRC, dst, nil, nil)
	f.mu.Unlock()
	t.Cleanup(f.Close)
	protect, err := keying.PeerContext() // same keys, its own state: the peer's
	require.NoError(t, err)
	return &fastFixture{f: f, dst: dst, protect: protect, buf: make([]byte, batchSlot)}
}

// drained waits until the stream's sender has sent what was queued.
func (x *fastFixture) drained(t testing.TB) {
	q := (*x.f.streams.Load())[fixtureSSRC].q
	deadline := time.Now().Add(5 * time.Second)
	for q.head.Load() != q.tail.Load() {
		require.True(t, time.Now().Before(deadline), "the sender is stuck")
		runtime.Gosched()
	}
}

// ingest gives the fast path one datagram and waits until its sender is done with it.
func (x *fastFixture) ingest(t testing.TB, b []byte) bool {
	taken := x.f.ingest(b, x.buf)
	x.drained(t)
	return taken
}

func (x *fastFixture) srtp(t testing.TB, seq uint16, payload []byte) []byte {
	raw, err := testPacket(fixtureSSRC, seq, payload).Marshal()
	require.NoError(t, err)
	out, err := x.protect.EncryptRTP(nil, raw, nil)
	require.NoError(t, err)
	return out
}

// Bad input costs one decryption at most and never panics: before a packet has opened,
// what fails is left to pion unchanged; after, it is refused and counted. A replay is
// refused, not sent twice.
func TestFastIngestBadInput(t *testing.T) {
	x := newFastFixture(t)
	first := x.srtp(t, 1, []byte("one"))
	badTag := bytes.Clone(first)
	badTag[len(badTag)-1] ^= 1
	keep := bytes.Clone(badTag)
	require.False(t, x.ingest(t, badTag), "not opened yet: pion's")
	require.Equal(t, keep, badTag, "left unchanged")
	require.True(t, x.ingest(t, first))
	require.Equal(t, []uint16{1}, x.dst.seqs())

	second := x.srtp(t, 2, []byte("two"))
	for _, tc := range []struct {
		name  string
		pkt   []byte
		taken bool
	}{
		{"replay", first, true},
		{"bad tag", func() []byte { b := bytes.Clone(second); b[len(b)-3] ^= 0x80; return b }(), true},
		{"truncated", second[:14], true},
		{"header only", second[:12], true},
		{"short", second[:11], false},
		{"other ssrc", func() []byte { b := bytes.Clone(second); b[11]++; return b }(), false},
		{"csrc count beyond the packet", func() []byte { b := bytes.Clone(second); b[0] |= 0x0f; return b }(), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := x.f.counts.stats().Refused
			require.Equal(t, tc.taken, x.ingest(t, bytes.Clone(tc.pkt)))
			if tc.taken {
				require.Equal(t, before+1, x.f.counts.stats().Refused)
			}
		})
	}
	require.Equal(t, []uint16{1}, x.dst.seqs(), "nothing bad was sent on")
	require.True(t, x.ingest(t, second))
	require.Equal(t, []uint16{1, 2}, x.dst.seqs())
}

func FuzzFastIngest(f *testing.F) {
	x := newFastFixture(f)
	valid := x.srtp(f, 7, []byte("payload"))
	f.Add(valid)
	f.Add(valid[:20])
	f.Add(x.srtp(f, 8, nil))
	f.Fuzz(func(t *testing.T, b []byte) {
		x.ingest(t, b)
	})
}

// The fast path's cost a packet: decrypt, the receive interceptors, the send.
func BenchmarkFastIngest(b *testing.B) {
	x := newFastFixture(b)
	var sent atomic.Uint64
	x.f.mu.Lock()
	x.f.publishLocked(fixtureSSRC, counting{&sent}, nil, nil)
	x.f.mu.Unlock()
	q := (*x.f.streams.Load())[fixtureSSRC].q
	pkts := make([][]byte, 1024)
	for i := range pkts {
		pkts[i] = x.srtp(b, uint16(i), make([]byte, 1100))
	}
	var n atomic.Uint64
	b.ReportAllocs()
	b.SetBytes(1100)
	b.ResetTimer()
	for i := range b.N {
		if i > 0 && i%len(pkts) == 0 { // a new stretch of sequence numbers for the replay window
			b.StopTimer()
			for j := range pkts {
				pkts[j] = x.srtp(b, uint16(i+j), make([]byte, 1100))
			}
			b.StartTimer()
		}
		for q.tail.Load()-q.head.Load() >= fastSlots { // the sender's pace, not drops
			runtime.Gosched()
		}
		if x.f.ingest(pkts[i%len(pkts)], x.buf) {
			n.Add(1)
		}
	}
	x.drained(b)
	b.StopTimer()
	require.Equal(b, uint64(b.N), n.Load())
	require.Equal(b, uint64(b.N), sent.Load())
	require.Equal(b, FastIngestStats{Packets: uint64(b.N)}, x.f.counts.stats())
}

// counting is an RTPSender that counts.
type counting struct{ n *atomic.Uint64 }

func (c counting) Send([]byte) error { c.n.Add(1); return nil }

// gated is a sink whose Send waits until open is closed.
type gated struct {
	sink
	open chan struct{}
}

func (g *gated) Send(pkt []byte) error {
	<-g.open
	return g.sink.Send(pkt)
}

// A stream's sender that falls fastSlots packets behind the socket loses the packets beyond
// (counted as full), and the reader never waits for it; the lost ones were still opened, so
// a replay of one is refused, and later packets flow again.
func TestFastIngestSenderBehind(t *testing.T) {
	x := newFastFixture(t)
	g := &gated{open: make(chan struct{})}
	var once sync.Once
	release := func() { once.Do(func() { close(g.open) }) }
	t.Cleanup(release) // before the fixture's Close, which waits for the sender
	x.f.mu.Lock()
	x.f.publishLocked(fixtureSSRC, g, nil, nil)
	x.f.mu.Unlock()

	const extra = 10
	var pkts [][]byte
	for seq := range uint16(fastSlots + extra) {
		pkts = append(pkts, x.srtp(t, seq+1, []byte{byte(seq)}))
		require.True(t, x.f.ingest(pkts[seq], x.buf), "packet %d", seq+1)
	}
	require.Equal(t, uint64(extra), x.f.counts.stats().Full)
	release()
	x.drained(t)
	want := make([]uint16, fastSlots)
	for i := range want {
		want[i] = uint16(i + 1)
	}
	require.Equal(t, want, g.seqs())

	require.True(t, x.ingest(t, pkts[fastSlots+2]), "a replay of a packet lost to the full queue")
	require.Equal(t, uint64(1), x.f.counts.stats().Refused)
	require.True(t, x.ingest(t, x.srtp(t, fastSlots+extra+1, nil)))
	require.Equal(t, uint16(fastSlots+extra+1), g.seqs()[fastSlots])
}
