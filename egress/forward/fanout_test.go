package forward

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/stretchr/testify/require"
)

// collector is a Writer that keeps a copy of every packet (Fanout reuses its buffer).
type collector struct {
	mu   sync.Mutex
	pkts []rtp.Packet
	err  error
}

func (c *collector) Write(b []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return 0, c.err
	}
	var p rtp.Packet
	if err := p.Unmarshal(append([]byte(nil), b...)); err != nil {
		return 0, err
	}
	c.pkts = append(c.pkts, p)
	return len(b), nil
}

func (c *collector) got() []rtp.Packet {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]rtp.Packet(nil), c.pkts...)
}

func rtpPacket(t testing.TB, ssrc uint32, seq uint16, payload string) []byte {
	t.Helper()
	p := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 111, SequenceNumber: seq, Timestamp: uint32(seq) * 960, SSRC: ssrc},
		Payload: []byte(payload)}
	b, err := p.Marshal()
	require.NoError(t, err)
	return b
}

func TestFanoutForward(t *testing.T) {
	var f Fanout
	cols := make([]*collector, 3)
	outs := make([]*Output, 3)
	for i := range cols {
		cols[i] = &collector{}
		outs[i] = NewOutput(uint32(1000+i), uint8(96+i), cols[i])
		f.add(outs[i])
	}
	for seq := uint16(500); seq < 505; seq++ {
		f.Forward(rtpPacket(t, 42, seq, fmt.Sprint("p", seq)))
	}
	for i, c := range cols {
		got := c.got()
		require.Len(t, got, 5, "output %d", i)
		for j, p := range got {
			require.Equal(t, uint32(1000+i), p.SSRC, "output %d has its own SSRC", i)
			require.Equal(t, uint8(96+i), p.PayloadType)
			require.Equal(t, uint16(500+j), p.SequenceNumber)
			require.Equal(t, fmt.Sprint("p", 500+j), string(p.Payload))
		}
	}
	require.Equal(t, uint64(15), f.Counters().Forwarded)
	require.Zero(t, f.Counters().Dropped)

	// Removing an output stops its packets and leaves the others.
	require.Equal(t, 2, f.remove(outs[1]))
	require.Equal(t, 2, f.remove(outs[1]), "removing twice is harmless")
	f.Forward(rtpPacket(t, 42, 505, "after"))
	require.Len(t, cols[0].got(), 6)
	require.Len(t, cols[1].got(), 5)
	require.Len(t, cols[2].got(), 6)
	require.Equal(t, 1, f.remove(outs[0]))
	require.Equal(t, 0, f.remove(outs[2]))
	f.Forward(rtpPacket(t, 42, 506, "nobody"))
	require.Equal(t, uint64(17), f.Counters().Forwarded)
}

func TestFanoutDrops(t *testing.T) {
	var f Fanout
	ok, failing := &collector{}, &collector{err: errors.New("closed")}
	f.add(NewOutput(1, 96, failing))
	f.add(NewOutput(2, 96, ok))

	f.Forward(rtpPacket(t, 42, 1, "x"))
	require.Len(t, ok.got(), 1, "one failing viewer does not stop the others")
	require.Equal(t, uint64(1), f.Counters().Forwarded)
	require.Equal(t, uint64(1), f.Counters().Dropped)

	f.Forward([]byte{0x80, 0, 0}) // too short: every output drops it
	require.Equal(t, uint64(3), f.Counters().Dropped)
	require.Len(t, ok.got(), 1)

	f.Forward(make([]byte, maxPacket+1))
	require.Len(t, ok.got(), 1, "oversized packets are not forwarded")
	require.Equal(t, Stats{Forwarded: 1, ForwardedBytes: 13, Dropped: 5, DroppedWrite: 1, DroppedInvalid: 2, DroppedOversize: 2},
		f.Counters(), "every drop has its reason")
}

func TestFanoutRetransmit(t *testing.T) {
	var f Fanout
	late := &collector{}
	early := &collector{}
	oEarly := NewOutput(7, 96, early)
	f.add(oEarly)
	// The early viewer sees source A, then the publisher reconnects as source B.
	for seq := uint16(100); seq < 110; seq++ {
		f.Forward(rtpPacket(t, 0xA, seq, fmt.Sprint("a", seq)))
	}
	oLate := NewOutput(8, 97, late)
	f.add(oLate)
	for seq := uint16(3000); seq < 3010; seq++ {
		f.Forward(rtpPacket(t, 0xB, seq, fmt.Sprint("b", seq)))
	}
	// early: out 100..109 from A, 110..119 from B (3000..3009). late: 3000..3009 from B only.
	require.Len(t, early.got(), 20)
	require.Equal(t, uint16(110), early.got()[10].SequenceNumber)

	n := len(early.got())
	sent := f.Retransmit(oEarly, []uint16{112, 119, 105, 120, 60000})
	require.Equal(t, 2, sent, "112 and 119 are B's and cached; 105 was A's; 120 and 60000 never sent")
	re := early.got()[n:]
	require.Len(t, re, 2)
	for i, want := range []struct {
		seq     uint16
		payload string
	}{{112, "b3002"}, {119, "b3009"}} {
		require.Equal(t, want.seq, re[i].SequenceNumber, "resent with the viewer's numbering")
		require.Equal(t, uint32(7), re[i].SSRC)
		require.Equal(t, uint8(96), re[i].PayloadType)
		require.Equal(t, want.payload, string(re[i].Payload))
	}

	n = len(late.got())
	require.Equal(t, 1, f.Retransmit(oLate, []uint16{3005}))
	p := late.got()[n]
	require.Equal(t, uint16(3005), p.SequenceNumber)
	require.Equal(t, uint32(8), p.SSRC)
	require.Equal(t, "b3005", string(p.Payload))

	// A retransmission does not disturb the numbering of what follows.
	f.Forward(rtpPacket(t, 0xB, 3010, "b3010"))
	require.Equal(t, uint16(120), early.got()[len(early.got())-1].SequenceNumber)

	// 10 packets of 16 bytes (a100..a109) and 22 of 17 (b3000..b3010, b3010 to both).
	require.Equal(t, Stats{Forwarded: 32, Retransmitted: 3, ForwardedBytes: 10*16 + 22*17, NACKs: 2, NACKed: 6},
		f.Counters(), "resends are counted apart from forwards")

	fresh := NewOutput(9, 96, &collector{})
	require.Zero(t, f.Retransmit(fresh, []uint16{3000}), "an output that was never sent anything has nothing to resend")
}

func TestFanoutRetransmitIsBounded(t *testing.T) {
	var f Fanout
	c := &collector{}
	o := NewOutput(7, 96, c)
	f.add(o)
	for seq := range uint16(400) { // the cache keeps the last 512
		f.Forward(rtpPacket(t, 0xA, seq, fmt.Sprint("a", seq)))
	}
	var lost []uint16
	for seq := range uint16(400) {
		lost = append(lost, seq)
	}
	n := len(c.got())
	// Newest is 399: 143..399 are young enough; only the first MaxRetransmit of them go.
	require.Equal(t, MaxRetransmit, f.Retransmit(o, lost))
	re := c.got()[n:]
	require.Len(t, re, MaxRetransmit)
	require.Equal(t, uint16(399-RetransmitAge), re[0].SequenceNumber)
	require.Zero(t, f.Retransmit(o, []uint16{0, 100, 142}), "too old to help")
	require.Equal(t, 1, f.Retransmit(o, []uint16{399}))
}

type discard struct{}

func (discard) Write(b []byte) (int, error) { return len(b), nil }

// BenchmarkFanoutForward is one packet to n viewers; with lanes=2 Forward writes half of them
// and queues the packet for the second lane's goroutine (on another core when there is one),
// waiting when that lane falls half a ring behind.
func BenchmarkFanoutForward(b *testing.B) {
	for _, tc := range []struct{ n, lanes int }{{1, 1}, {10, 1}, {100, 1}, {100, 2}} {
		name := fmt.Sprintf("outputs=%d", tc.n)
		if tc.lanes > 1 {
			name += fmt.Sprintf("/lanes=%d", tc.lanes)
		}
		b.Run(name, func(b *testing.B) {
			f := &Fanout{maxLanes: tc.lanes}
			defer f.close()
			for i := range tc.n {
				f.add(NewOutput(uint32(i+1), 96, discard{}))
			}
			pkt := rtpPacket(b, 42, 0, string(make([]byte, 1200-12)))
			b.ReportAllocs()
			b.SetBytes(1200)
			var seq uint16
			for b.Loop() {
				seq++
				pkt[2], pkt[3] = byte(seq>>8), byte(seq)
				f.Forward(pkt)
				// Steady state, not a flood: the second lane keeps up or Forward waits for it.
				for _, l := range f.lanes[1:] {
					for l.ring.head.Load()-l.ring.tail.Load() > ringSlots/2 {
						runtime.Gosched()
					}
				}
			}
			if s := f.Counters(); s.Forwarded == 0 || s.Dropped != 0 {
				b.Fatalf("forwarded %d dropped %d", s.Forwarded, s.Dropped)
			}
		})
	}
}

// TestFanoutForwardAllocs keeps the hot path allocation-free outside benchmarks too.
func TestFanoutForwardAllocs(t *testing.T) {
	f := new(Fanout)
	for i := range 10 {
		f.add(NewOutput(uint32(i+1), 96, discard{}))
	}
	pkt := rtpPacket(t, 42, 0, string(make([]byte, 1188)))
	var seq uint16
	allocs := testing.AllocsPerRun(200, func() {
		seq++
		pkt[2], pkt[3] = byte(seq>>8), byte(seq)
		f.Forward(pkt)
	})
	require.Zero(t, allocs)
	lost := []uint16{1, 2, 3}
	allocs = testing.AllocsPerRun(200, func() { f.Retransmit(f.lanes[0].outputs[0], lost) })
	require.Zero(t, allocs)
}

// BenchmarkFanoutRetransmit is one viewer's NACK report of 32 packets served from the cache
// (copied and rewritten under the fan-out's lock, written after it) while 100 viewers share
// the track.
func BenchmarkFanoutRetransmit(b *testing.B) {
	f := new(Fanout)
	var outs []*Output
	for i := range 100 {
		o := NewOutput(uint32(i+1), 96, discard{})
		outs = append(outs, o)
		f.add(o)
	}
	for seq := range uint16(CacheSize) {
		pkt := rtpPacket(b, 42, seq, string(make([]byte, 1200-12)))
		f.Forward(pkt)
	}
	lost := make([]uint16, MaxRetransmit)
	for i := range lost {
		lost[i] = uint16(CacheSize - 2*MaxRetransmit + 2*i)
	}
	b.ReportAllocs()
	b.SetBytes(int64(1200 * len(lost)))
	i := 0
	for b.Loop() {
		if f.Retransmit(outs[i%len(outs)], lost) != len(lost) {
			b.Fatal("not every packet was resent")
		}
		i++
	}
}

// TestFanoutLanes: with lanes allowed, viewers beyond LaneMin are written by another
// goroutine; every viewer still gets every packet once, in order, with its own numbering, and
// its NACKs are served; close stops the lanes' goroutines.
func TestFanoutLanes(t *testing.T) {
	f := &Fanout{maxLanes: 3}
	const viewers = 3*LaneMin + 5
	cols := make([]*collector, viewers)
	outs := make([]*Output, viewers)
	for i := range viewers {
		cols[i] = &collector{}
		outs[i] = NewOutput(uint32(1000+i), 96, cols[i])
		f.add(outs[i])
	}
	require.Len(t, f.lanes, 3, "one lane per LaneMin viewers, up to the limit")
	for _, l := range f.lanes {
		require.GreaterOrEqual(t, len(l.outputs), LaneMin, "new viewers go to the smallest lane")
	}
	const packets = 3 * ringSlots // more than a ring holds: the lanes keep up or count drops
	for seq := range uint16(packets) {
		f.Forward(rtpPacket(t, 42, 7000+seq, fmt.Sprint("p", seq)))
		if seq%64 == 63 {
			require.Eventually(t, func() bool { return f.Counters().Forwarded == uint64(seq+1)*viewers },
				5*time.Second, time.Millisecond, "every lane writes every packet")
		}
	}
	require.Zero(t, f.Counters().Dropped)
	for i, c := range cols {
		got := c.got()
		require.Len(t, got, packets, "viewer %d", i)
		for k, p := range got {
			require.Equal(t, uint32(1000+i), p.SSRC)
			require.Equal(t, fmt.Sprint("p", k), string(p.Payload), "viewer %d gets the packets in order", i)
		}
	}

	last := outs[viewers-1] // in a worker lane
	require.NotSame(t, f.lanes[0], last.lane.Load())
	first := cols[viewers-1].got()[0].SequenceNumber
	n := len(cols[viewers-1].got())
	require.Equal(t, 2, f.Retransmit(last, []uint16{first + packets - 1, first + packets - 2}))
	re := cols[viewers-1].got()[n:]
	require.Equal(t, fmt.Sprint("p", packets-1), string(re[0].Payload))

	require.Equal(t, viewers-1, f.remove(outs[0]))
	f.close()
	f.close() // idempotent
	for _, l := range f.lanes[1:] {
		select {
		case <-l.stop:
		default:
			t.Fatal("a lane's goroutine was not stopped")
		}
	}
}

// headerCollector takes parsed headers, as pion's TrackLocalWriter does, and keeps the packets
// as they would go out.
type headerCollector struct{ collector }

func (c *headerCollector) WriteRTP(h *rtp.Header, payload []byte) (int, error) {
	hb, err := h.Marshal()
	if err != nil {
		return 0, err
	}
	return c.Write(append(hb, payload...))
}

// TestFanoutHeaderWriters: a viewer whose writer takes parsed headers gets the same packets as
// one given bytes, extensions, marker and padding included.
func TestFanoutHeaderWriters(t *testing.T) {
	var f Fanout
	byBytes, byHeader := &collector{}, &headerCollector{}
	f.add(NewOutput(7, 100, byBytes))
	f.add(NewOutput(7, 100, byHeader))
	for seq := uint16(65530); seq != 4; seq++ {
		p := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: seq, Timestamp: uint32(seq) * 3000,
			SSRC: 0xA, Marker: seq%2 == 0}, Payload: []byte(fmt.Sprint("frame", seq))}
		require.NoError(t, p.SetExtension(3, []byte{byte(seq), 1, 2}))
		if seq%3 == 0 {
			p.Padding, p.PaddingSize = true, 4
		}
		b, err := p.Marshal()
		require.NoError(t, err)
		f.Forward(b)
	}
	f.Forward([]byte{0x80, 1, 2}) // too short for either
	require.Len(t, byHeader.got(), 10)
	// The publisher's extensions never reach a viewer: blanked to padding in bytes, dropped
	// from a parsed header.
	bytesGot := byBytes.got()
	for i := range bytesGot {
		require.Empty(t, bytesGot[i].Extensions)
		bytesGot[i].Extension, bytesGot[i].ExtensionProfile = false, 0
	}
	require.Equal(t, bytesGot, byHeader.got())
	c := f.Counters()
	require.Equal(t, uint64(20), c.Forwarded)
	require.Equal(t, uint64(2), c.DroppedInvalid)
}
