package audiolevel

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// packet builds an RTP packet with the given extensions, in pion's one- or two-byte form.
func packet(t testing.TB, profile uint16, csrc int, exts map[uint8][]byte) []byte {
	t.Helper()
	h := rtp.Header{Version: 2, PayloadType: 111, SequenceNumber: 7, Timestamp: 960, SSRC: 42}
	for i := range csrc {
		h.CSRC = append(h.CSRC, uint32(i+1))
	}
	if len(exts) > 0 {
		h.Extension, h.ExtensionProfile = true, profile
		for id := uint8(1); id < 16; id++ {
			if b, ok := exts[id]; ok {
				require.NoError(t, h.SetExtension(id, b))
			}
		}
	}
	b, err := (&rtp.Packet{Header: h, Payload: []byte{0xde, 0xad, 0xbe, 0xef}}).Marshal()
	require.NoError(t, err)
	return b
}

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		name          string
		pkt           []byte
		id            uint8
		level         uint8
		voice, wantOK bool
	}{
		{"one-byte", packet(t, 0xBEDE, 0, map[uint8][]byte{1: {0x80 | 30}}), 1, 30, true, true},
		{"one-byte after others", packet(t, 0xBEDE, 2, map[uint8][]byte{2: {1, 2, 3}, 3: {0x7f}, 5: {1, 2}}), 3, 127, false, true},
		{"two-byte", packet(t, 0x1000, 0, map[uint8][]byte{4: {}, 9: {0x80 | 3}}), 9, 3, true, true},
		{"other id", packet(t, 0xBEDE, 0, map[uint8][]byte{1: {30}}), 2, 0, false, false},
		{"no extension", packet(t, 0xBEDE, 0, nil), 1, 0, false, false},
		{"id zero", packet(t, 0xBEDE, 0, map[uint8][]byte{1: {30}}), 0, 0, false, false},
		{"short", []byte{0x90, 0, 0}, 1, 0, false, false},
		{"not v2", append([]byte{0x50}, packet(t, 0xBEDE, 0, map[uint8][]byte{1: {30}})[1:]...), 1, 0, false, false},
		{"length beyond packet", []byte{0x90, 111, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0xBE, 0xDE, 0, 9, 0x10, 30}, 1, 0, false, false},
		{"element beyond extension", []byte{0x90, 111, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0xBE, 0xDE, 0, 1, 0x1f, 30, 0, 0}, 1, 0, false, false},
		{"unknown profile", []byte{0x90, 111, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0x12, 0x34, 0, 1, 0x10, 30, 0, 0}, 1, 0, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			level, voice, ok := Parse(tc.pkt, tc.id)
			require.Equal(t, tc.wantOK, ok)
			require.Equal(t, tc.level, level)
			require.Equal(t, tc.voice, voice)
		})
	}
}

func FuzzParse(f *testing.F) {
	f.Add(packet(f, 0xBEDE, 1, map[uint8][]byte{1: {0x80 | 30}, 2: {1, 2}}), uint8(1))
	f.Add(packet(f, 0x1000, 0, map[uint8][]byte{3: {3}}), uint8(3))
	f.Fuzz(func(t *testing.T, pkt []byte, id uint8) {
		level, _, ok := Parse(pkt, id)
		if ok && level > Silence {
			t.Fatalf("level %d beyond silence", level)
		}
	})
}

// BenchmarkParse is the ingest path's cost per audio packet: Chromium's usual extensions
// (audio level among transport-cc and mid), level last.
func BenchmarkParse(b *testing.B) {
	pkt := packet(b, 0xBEDE, 0, map[uint8][]byte{3: {0, 1}, 4: {'0'}, 1: {0x80 | 25}})
	b.ReportAllocs()
	b.SetBytes(int64(len(pkt)))
	for b.Loop() {
		if _, _, ok := Parse(pkt, 1); !ok {
			b.Fatal("no level")
		}
	}
}

// BenchmarkMeter is Parse plus the meter's update, what a publisher's read loop adds per
// audio packet.
func BenchmarkMeter(b *testing.B) {
	pkt := packet(b, 0xBEDE, 0, map[uint8][]byte{1: {0x80 | 25}})
	m := NewMeter(Config{})
	now := time.Unix(0, 0)
	b.ReportAllocs()
	for b.Loop() {
		now = now.Add(20 * time.Millisecond)
		level, _, _ := Parse(pkt, 1)
		m.Observe(level, now)
		m.Due(now)
	}
}

const frame = 20 * time.Millisecond

// feed runs the meter over d of packets at level and returns the state changes seen, with
// the time each happened.
func feed(m *Meter, now *time.Time, d time.Duration, level uint8) []time.Time {
	var changes []time.Time
	for end := now.Add(d); now.Before(end); *now = now.Add(frame) {
		if m.Observe(level, *now) {
			changes = append(changes, *now)
		}
	}
	return changes
}

func TestMeterSpeechAndSilence(t *testing.T) {
	m := NewMeter(Config{})
	start := time.Unix(1000, 0)
	now := start
	require.Empty(t, feed(m, &now, time.Second, Silence))
	require.False(t, m.Speaking())
	talk := now
	ch := feed(m, &now, 2*time.Second, 20)
	require.Len(t, ch, 1, "one start for a continuous voice")
	require.True(t, m.Speaking())
	require.Less(t, ch[0].Sub(talk), 200*time.Millisecond, "start detected within 200 ms")
	// Pauses between words, shorter than Hold: still speaking.
	for range 5 {
		require.Empty(t, feed(m, &now, 600*time.Millisecond, Silence))
		require.Empty(t, feed(m, &now, 300*time.Millisecond, 25))
	}
	hush := now
	ch = feed(m, &now, 3*time.Second, Silence)
	require.Len(t, ch, 1)
	require.False(t, m.Speaking())
	require.InDelta(t, float64(time.Second), float64(ch[0].Sub(hush)), float64(200*time.Millisecond))
	require.Equal(t, uint8(Silence), m.Level())
}

func TestMeterTickWithoutPackets(t *testing.T) {
	m := NewMeter(Config{})
	now := time.Unix(1000, 0)
	feed(m, &now, time.Second, 10)
	require.True(t, m.Speaking())
	var stopped time.Time
	for i := range 200 {
		at := now.Add(time.Duration(i) * 10 * time.Millisecond)
		if m.Tick(at) {
			stopped = at
			break
		}
	}
	require.False(t, m.Speaking(), "a sender that goes quiet by sending nothing (DTX) stops speaking")
	require.WithinDuration(t, now.Add(1100*time.Millisecond), stopped, 150*time.Millisecond)
}

// TestMeterChangesBounded is the property the event log relies on: whatever the levels, a
// track changes state at most twice per Hold+MinQuiet, and a state change is reported at
// once.
func TestMeterChangesBounded(t *testing.T) {
	for seed := range uint64(50) {
		rng := rand.New(rand.NewPCG(seed, 7))
		cfg := Config{}.Defaults()
		m := NewMeter(cfg)
		now := time.Unix(0, 0)
		var changes []time.Time
		for range 3000 { // 60 s of packets
			var level uint8
			switch rng.IntN(3) {
			case 0:
				level = Silence
			case 1:
				level = uint8(rng.IntN(128))
			default:
				level = uint8(30 + rng.IntN(40)) // around both thresholds
			}
			if m.Observe(level, now) {
				changes = append(changes, now)
				require.True(t, m.Due(now), "a change is due at once")
			}
			now = now.Add(frame)
		}
		window := cfg.Hold + cfg.MinQuiet
		for i := 2; i < len(changes); i++ {
			require.GreaterOrEqual(t, changes[i].Sub(changes[i-2]), window, "seed %d: three changes within %v", seed, window)
		}
		require.LessOrEqual(t, len(changes), 2*int(60*time.Second/window)+2)
	}
}

func TestMeterDue(t *testing.T) {
	m := NewMeter(Config{})
	now := time.Unix(0, 0)
	require.False(t, m.Due(now), "nothing to report before a packet")
	m.Observe(Silence, now)
	require.True(t, m.Due(now))
	require.False(t, m.Due(now.Add(500*time.Millisecond)))
	require.True(t, m.Due(now.Add(time.Second)), "quiet: every second")
	now = now.Add(time.Second)
	feed(m, &now, time.Second, 10)
	require.True(t, m.Due(now))
	require.False(t, m.Due(now.Add(50*time.Millisecond)))
	require.True(t, m.Due(now.Add(100*time.Millisecond)), "speaking: every 100 ms")
}

func TestConfigValidate(t *testing.T) {
	require.NoError(t, Config{}.Validate())
	require.Error(t, Config{Start: 60, Stop: 40}.Validate())
	require.Error(t, Config{Start: 200}.Validate())
}

func TestRankerOrderAndTop(t *testing.T) {
	var r Ranker
	now := time.Unix(0, 0)
	require.False(t, r.Set("a", Silence, false, now))
	require.False(t, r.Set("b", Silence, false, now))
	require.Equal(t, []string{"a"}, r.Top(1, nil), "before anyone spoke: the first reported")
	require.True(t, r.Set("b", 30, true, now))
	require.Equal(t, []Speaker{{"b", 30}}, r.Speakers(nil))
	require.Equal(t, []string{"b"}, r.Top(1, nil))
	require.True(t, r.Set("c", 20, true, now))
	require.Equal(t, []string{"c", "b"}, r.Top(2, nil), "a newcomer ranks by level among newcomers, after the standing order unless louder by the margin")
	// b louder than c but by less than the margin: no swap.
	require.False(t, r.Set("b", 16, true, now))
	require.Equal(t, []string{"c", "b"}, r.Top(3, nil)[:2])
	require.True(t, r.Set("b", 14, true, now), "louder by the margin passes")
	require.Equal(t, []string{"b", "c", "a"}, r.Top(3, nil))
	now = now.Add(time.Second)
	require.True(t, r.Set("b", Silence, false, now))
	require.Equal(t, []string{"c", "b", "a"}, r.Top(5, nil), "the one who spoke last comes before the one who never spoke")
	require.True(t, r.Forget("c", now))
	require.Empty(t, r.Speakers(nil))
	require.False(t, r.Prune(now.Add(2*time.Second)))
	r.Prune(now.Add(4 * time.Second))
	require.Zero(t, r.Len(), "tracks with no report for Expire are forgotten")
}

// TestRankerNoFlap: two voices of about the same level, with report noise below the margin,
// never swap places.
func TestRankerNoFlap(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var r Ranker
	now := time.Unix(0, 0)
	r.Set("a", 30, true, now)
	r.Set("b", 30, true, now)
	first := r.Top(1, nil)[0]
	for range 10000 {
		now = now.Add(50 * time.Millisecond)
		id := []string{"a", "b"}[rng.IntN(2)]
		r.Set(id, uint8(28+rng.IntN(5)), true, now) // 28..32: within the 6 dB margin
		require.Equal(t, first, r.Top(1, nil)[0])
	}
}

func TestReportRoundTrip(t *testing.T) {
	for _, r := range []Report{{"t1", 20, true}, {"01JF0000000000000000000000", Silence, false}} {
		b, err := r.AppendBinary(nil)
		require.NoError(t, err)
		got, err := ParseReport(b)
		require.NoError(t, err)
		require.Equal(t, r, got)
	}
	_, err := Report{}.AppendBinary(nil)
	require.Error(t, err)
	for _, b := range [][]byte{nil, {1, 0, 0}, {2, 0, 0, 'x'}, {1, 0, 200, 'x'}} {
		_, err := ParseReport(b)
		require.ErrorIs(t, err, ErrReport)
	}
}

func FuzzParseReport(f *testing.F) {
	f.Add([]byte{1, 1, 20, 't', '1'})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParseReport(b)
		if err != nil {
			return
		}
		again, err := r.AppendBinary(nil)
		require.NoError(t, err)
		require.Equal(t, b[1]&1, again[1])
		require.Equal(t, b[2:], again[2:])
	})
}
