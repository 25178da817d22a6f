package bwe_test

import (
	"context"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/interceptor/pkg/twcc"
	"github.com/pion/rtcp"
	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/pipeline/bwe"
)

// recorded builds feedback with pion's twcc.Recorder from arrivals with random gaps, jitter
// and reordering-sized jumps, so every chunk kind and both delta sizes occur.
func recorded(t testing.TB, seed uint64, n int) [][]byte {
	rng := rand.New(rand.NewPCG(seed, 7))
	rec := twcc.NewRecorder(1)
	var out [][]byte
	at := int64(1_000_000)
	for i := range n {
		if rng.IntN(10) == 0 {
			continue // lost
		}
		switch rng.IntN(20) {
		case 0:
			at += 70_000 // a large delta
		default:
			at += int64(rng.IntN(3000))
		}
		rec.Record(2, uint16(60000+i), at) // wraps the 16-bit sequence
		if i%40 == 39 || i == n-1 {
			for _, p := range rec.BuildFeedbackPacket() {
				raw, err := p.Marshal()
				require.NoError(t, err)
				out = append(out, raw)
			}
		}
	}
	return out
}

func TestParseFeedbackMatchesPion(t *testing.T) {
	for seed := range uint64(20) {
		for _, raw := range recorded(t, seed, 400) {
			var want rtcp.TransportLayerCC
			require.NoError(t, want.Unmarshal(raw))
			got, err := bwe.ParseFeedback(raw)
			require.NoError(t, err)
			require.Equal(t, want.BaseSequenceNumber, got.Base)
			require.Equal(t, want.PacketStatusCount, got.Count)
			require.Equal(t, want.ReferenceTime, got.RefTime)
			require.Equal(t, want.FbPktCount, got.FbCount)

			// pion's statuses, flattened.
			var statuses []uint16
			for _, c := range want.PacketChunks {
				switch c := c.(type) {
				case *rtcp.RunLengthChunk:
					for range c.RunLength {
						statuses = append(statuses, c.PacketStatusSymbol)
					}
				case *rtcp.StatusVectorChunk:
					statuses = append(statuses, c.SymbolList...)
				}
			}
			pkts := got.Packets()
			d := 0
			for i := range int(want.PacketStatusCount) {
				p, ok := pkts.Next()
				require.True(t, ok, "status %d of %d", i, want.PacketStatusCount)
				require.Equal(t, want.BaseSequenceNumber+uint16(i), p.Seq)
				received := statuses[i] == rtcp.TypeTCCPacketReceivedSmallDelta || statuses[i] == rtcp.TypeTCCPacketReceivedLargeDelta
				require.Equal(t, received, p.Received, "status %d", i)
				if received {
					require.Equal(t, int32(want.RecvDeltas[d].Delta), p.Delta, "delta %d", d)
					d++
				}
			}
			_, ok := pkts.Next()
			require.False(t, ok)
			require.Equal(t, len(want.RecvDeltas), d)
		}
	}
}

func TestEachFeedbackInCompound(t *testing.T) {
	fb := recorded(t, 1, 40)[0]
	rr, err := (&rtcp.ReceiverReport{SSRC: 1}).Marshal()
	require.NoError(t, err)
	nack, err := (&rtcp.TransportLayerNack{SenderSSRC: 1, MediaSSRC: 2, Nacks: []rtcp.NackPair{{PacketID: 5}}}).Marshal()
	require.NoError(t, err)
	compound := append(append(append(append([]byte{}, rr...), fb...), nack...), fb...)
	var seen [][]byte
	bwe.EachFeedback(compound, func(p []byte) { seen = append(seen, p) })
	require.Equal(t, [][]byte{fb, fb}, seen)
	seen = nil
	bwe.EachFeedback(compound[:len(compound)-1], func(p []byte) { seen = append(seen, p) })
	require.Equal(t, [][]byte{fb}, seen, "a truncated last packet is not read")
}

func TestParseFeedbackRejects(t *testing.T) {
	good := recorded(t, 3, 40)[0]
	cases := map[string][]byte{
		"empty":     nil,
		"short":     good[:10],
		"not rtpfb": append([]byte{0x8f, 200}, good[2:]...),
		"other fmt": append([]byte{0x81, 205}, good[2:]...),
		"truncated": good[:len(good)-4],
		"too long":  append([]byte{good[0], good[1], 0xff, 0xff}, good[4:]...),
		"count beyond": func() []byte {
			b := append([]byte{}, good...)
			b[14], b[15] = 0xff, 0xff
			return b
		}(),
		"bad padding": func() []byte {
			b := append([]byte{}, good...)
			b[0] |= 0x20
			b[len(b)-1] = 200
			return b
		}(),
	}
	for name, b := range cases {
		_, err := bwe.ParseFeedback(b)
		require.ErrorIs(t, err, bwe.ErrFeedback, name)
	}
}

func FuzzParseFeedback(f *testing.F) {
	for _, raw := range recorded(f, 5, 200) {
		f.Add(raw)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		fb, err := bwe.ParseFeedback(b)
		if err != nil {
			return
		}
		pkts := fb.Packets()
		n := 0
		for {
			if _, ok := pkts.Next(); !ok {
				break
			}
			n++
		}
		if n != int(fb.Count) {
			t.Fatalf("%d statuses of %d", n, fb.Count)
		}
		var h bwe.History
		e := bwe.New(bwe.Config{})
		e.OnFeedback(0, &fb, &h)
	})
}

func TestHistory(t *testing.T) {
	var h bwe.History
	_, _, ok := h.Lookup(5)
	require.False(t, ok)
	h.Sent(5, 1234, 1200)
	at, size, ok := h.Lookup(5)
	require.True(t, ok)
	require.EqualValues(t, 1234, at)
	require.Equal(t, 1200, size)
	h.Sent(5+bwe.HistorySize, 99, 100) // reuses the slot
	_, _, ok = h.Lookup(5)
	require.False(t, ok)
	at, size, ok = h.Lookup(5 + bwe.HistorySize)
	require.True(t, ok)
	require.EqualValues(t, 99, at)
	require.Equal(t, 100, size)
}

// TestHistoryConcurrent: several senders record while feedback looks up, as fan-out lanes
// and the RTCP reader do; a lookup finds the packet it asks for or nothing, never another's.
func TestHistoryConcurrent(t *testing.T) {
	var h bwe.History
	var next atomic.Uint32
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 20_000 {
				seq := uint16(next.Add(1) - 1)
				h.Sent(seq, time.Duration(seq)*time.Microsecond, int(seq%1500))
			}
		})
	}
	wg.Go(func() {
		for i := range 80_000 {
			seq := uint16(i)
			if at, size, ok := h.Lookup(seq); ok && (at != time.Duration(seq)*time.Microsecond || size != int(seq%1500)) {
				t.Errorf("seq %d: at %v size %d", seq, at, size)
				return
			}
		}
	})
	wg.Wait()
}

// TestHistorySlotContention: two senders write packets HistorySize apart (one slot) over and
// over while a lookup reads it; each packet's time and size must stay paired. The old
// seqlock let the two writes interleave and a lookup paired one packet's size with the
// other's time (CI once, from TestHistoryConcurrent; here it needs a write preempted
// mid-way or three cores, so this catches it now and then, never wrongly).
func TestHistorySlotContention(t *testing.T) {
	var h bwe.History
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	for _, seq := range []uint16{7, 7 + bwe.HistorySize} {
		wg.Go(func() {
			for i := 0; ctx.Err() == nil; i++ {
				h.Sent(seq, time.Duration(seq)*time.Microsecond, int(seq))
				if i%64 == 0 {
					runtime.Gosched() // lets the lookup in on a machine of two cores
				}
			}
		})
	}
	seen := 0
	for i := 0; seen < 200_000; i++ {
		seq := []uint16{7, 7 + bwe.HistorySize}[i%2]
		at, size, ok := h.Lookup(seq)
		if !ok {
			continue
		}
		seen++
		if at != time.Duration(seq)*time.Microsecond || size != int(seq) {
			cancel()
			wg.Wait()
			t.Fatalf("lookup %d: time %v, size %d: two packets mixed", seq, at, size)
		}
	}
	cancel()
	wg.Wait()
}
