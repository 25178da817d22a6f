package pacer_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/pipeline/pacer"
)

const ms = time.Millisecond

func newPacer(t testing.TB, cfg pacer.Config, bps int) *pacer.Pacer[int] {
	t.Helper()
	p, err := pacer.New[int](cfg)
	require.NoError(t, err)
	p.SetRate(0, bps)
	return p
}

func TestOffSendsEverything(t *testing.T) {
	p := newPacer(t, pacer.Config{}, 0)
	for i := range 10000 {
		require.True(t, p.Send(time.Duration(i), pacer.Video, 1200))
	}
	require.Equal(t, pacer.Stats{}, p.Stats())
}

func TestBudgetAndRefill(t *testing.T) {
	// 1 Mbit/s x 2.5 = 312500 B/s; a 40 ms window is 12500 bytes.
	p := newPacer(t, pacer.Config{}, 1_000_000)
	require.Equal(t, 2_500_000, p.Rate())
	sent := 0
	for p.Send(0, pacer.Video, 1000) {
		sent++
	}
	require.Equal(t, 13, sent, "the window (12500 B) and one packet over it")
	p.Push(0, 1000, 1)
	_, ok := p.Pop(0)
	require.False(t, ok, "nothing refilled yet")
	// 500 bytes of debt are repaid after 1.6 ms, then one packet may go.
	_, ok = p.Pop(time.Duration(1.5 * float64(ms)))
	require.False(t, ok)
	it, ok := p.Pop(2 * ms)
	require.True(t, ok)
	require.Equal(t, 1, it)
	// The budget never grows past the window: after a long quiet spell a burst of 13 again.
	sent = 0
	for p.Send(10*time.Second, pacer.Video, 1000) {
		sent++
	}
	require.Equal(t, 13, sent)
}

func TestQueueKeepsOrderAndAudioBypasses(t *testing.T) {
	p := newPacer(t, pacer.Config{}, 1_000_000)
	for p.Send(0, pacer.Video, 1200) {
	}
	p.Push(0, 1200, 0)
	// Once a queue exists, later video and retransmissions wait behind it even when the
	// budget has refilled; audio does not.
	for i := 1; i < 50; i++ {
		now := time.Duration(i) * ms
		require.True(t, p.Send(now, pacer.Audio, 100), "audio waits for nothing")
		cls := pacer.Video
		if i%5 == 0 {
			cls = pacer.Retransmission
		}
		if p.Send(now, cls, 1200) {
			t.Fatalf("packet %d overtook the queue", i)
		}
		p.Push(now, 1200, i)
	}
	next := 0
	for now := 50 * ms; next < 50; now += ms {
		for {
			it, ok := p.Pop(now)
			if !ok {
				break
			}
			require.Equal(t, next, it)
			next++
		}
		require.Less(t, now, 2*time.Second)
	}
	st := p.Stats()
	require.EqualValues(t, 50, st.Queued)
	require.Zero(t, st.Dropped)
	require.Positive(t, st.MaxDelay)
}

func TestDrainRate(t *testing.T) {
	// 400 kbit/s x 2.5 = 125000 B/s: 100 packets of 1250 B leave over about a second.
	p := newPacer(t, pacer.Config{}, 400_000)
	for p.Send(0, pacer.Video, 1250) {
	}
	for i := range 100 {
		p.Push(0, 1250, i)
	}
	var last time.Duration
	out := 0
	for now := time.Duration(0); out < 100; now += 5 * ms {
		for {
			if _, ok := p.Pop(now); !ok {
				break
			}
			out++
			last = now
		}
	}
	require.GreaterOrEqual(t, last, 900*ms)
	require.LessOrEqual(t, last, 1100*ms)
}

func TestBounds(t *testing.T) {
	cases := []struct {
		name string
		cfg  pacer.Config
		push int
		at   time.Duration
		left int
	}{
		{"packets", pacer.Config{MaxPackets: 10}, 25, 0, 10},
		{"bytes", pacer.Config{MaxBytes: 12000}, 25, 0, 10},
		{"delay", pacer.Config{MaxDelay: 100 * ms}, 25, 100 * ms, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := newPacer(t, c.cfg, 100_000)
			for p.Send(0, pacer.Video, 1200) {
			}
			dropped := []int{}
			for i := range c.push {
				p.Push(0, 1200, i)
				for {
					it, ok := p.Drop(c.at)
					if !ok {
						break
					}
					dropped = append(dropped, it)
				}
			}
			n, _ := p.Len()
			require.Equal(t, c.left, n)
			require.Len(t, dropped, c.push-c.left)
			for i, it := range dropped {
				require.Equal(t, i, it, "the oldest goes first")
			}
			require.EqualValues(t, c.push-c.left, p.Stats().Dropped)
		})
	}
}

func TestRateOffReleasesQueue(t *testing.T) {
	p := newPacer(t, pacer.Config{}, 100_000)
	for p.Send(0, pacer.Video, 1200) {
	}
	for i := range 20 {
		p.Push(0, 1200, i)
	}
	p.SetRate(ms, 0)
	for i := range 20 {
		it, ok := p.Pop(ms)
		require.True(t, ok)
		require.Equal(t, i, it)
	}
}

func TestConfigValidate(t *testing.T) {
	_, err := pacer.New[int](pacer.Config{Factor: 0.5})
	require.ErrorIs(t, err, pacer.ErrConfig)
	_, err = pacer.New[int](pacer.Config{MaxDelay: -1})
	require.ErrorIs(t, err, pacer.ErrConfig)
}

// FuzzPacer drives a pacer with arbitrary operations and checks its invariants: order kept,
// every packet pushed leaves exactly once (popped or dropped), the queue within its bounds
// after Drop, the rate never exceeded over the run beyond the window.
func FuzzPacer(f *testing.F) {
	f.Add([]byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 200, 100, 50})
	f.Add([]byte{3, 3, 3, 3, 3, 3, 3, 3, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2})
	f.Fuzz(func(t *testing.T, ops []byte) {
		cfg := pacer.Config{MaxPackets: 20, MaxBytes: 20000, MaxDelay: 200 * ms}
		p := newPacer(t, cfg, 300_000)
		var now time.Duration
		pushed, next, gone := 0, 0, 0
		seen := map[int]bool{}
		take := func(it int) {
			require.False(t, seen[it], "packet %d left twice", it)
			require.GreaterOrEqual(t, it, next, "packet %d after %d", it, next)
			seen[it] = true
			next = it
			gone++
		}
		for _, op := range ops {
			size := 60 + int(op)*5
			switch op % 4 {
			case 0:
				now += time.Duration(op) * 100 * time.Microsecond
			case 1:
				p.Send(now, pacer.Audio, size)
			case 2, 3:
				if !p.Send(now, pacer.Video, size) {
					p.Push(now, size, pushed)
					pushed++
				}
			}
			for {
				it, ok := p.Drop(now)
				if !ok {
					break
				}
				take(it)
			}
			n, b := p.Len()
			require.LessOrEqual(t, n, cfg.MaxPackets)
			require.LessOrEqual(t, b, cfg.MaxBytes)
			for {
				it, ok := p.Pop(now)
				if !ok {
					break
				}
				take(it)
			}
		}
		p.SetRate(now, 0)
		for {
			it, ok := p.Pop(now)
			if !ok {
				break
			}
			take(it)
		}
		require.Equal(t, pushed, gone)
	})
}

func TestTrySendNeedsClockOnlyWhenSpent(t *testing.T) {
	p := newPacer(t, pacer.Config{}, 1_000_000)
	sent := 0
	for p.TrySend(pacer.Video, 1000) {
		sent++
	}
	require.Equal(t, 13, sent)
	require.True(t, p.TrySend(pacer.Audio, 100), "audio always")
	require.False(t, p.Send(0, pacer.Video, 1000), "no time passed")
	require.True(t, p.Send(10*ms, pacer.Video, 1000), "10 ms refilled 3125 B")
}
