package projections_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/events"
	"github.com/jetmedia/jetmedia/pipeline/eventlog"
	"github.com/jetmedia/jetmedia/projections"
	"github.com/jetmedia/jetmedia/tests/loggen"
)

// upTo is the definition the property tests hold StateAt to: the events stamped at or before T.
func upTo(evs []events.Envelope, at time.Time) []events.Envelope {
	var out []events.Envelope
	for _, e := range evs {
		if !e.Time.After(at) {
			out = append(out, e)
		}
	}
	return out
}

// instants returns instants to ask about: before the first event, at every event's time, just
// after it, between events, and after the last.
func instants(rng *rand.Rand, evs []events.Envelope) []time.Time {
	out := []time.Time{evs[0].Time.Add(-time.Second), evs[len(evs)-1].Time.Add(time.Hour)}
	for range 20 {
		e := evs[rng.IntN(len(evs))]
		out = append(out, e.Time, e.Time.Add(time.Microsecond), e.Time.Add(-time.Microsecond))
	}
	return out
}

// TestFoldUntilProperty: for random logs (with redeliveries and unknown types), the state at
// any T is the fold of the events up to T.
func TestFoldUntilProperty(t *testing.T) {
	for seed := range uint64(200) {
		rng := rand.New(rand.NewPCG(seed, 42))
		log := randomLog(t, rng, 1+rng.IntN(150))
		for _, at := range instants(rng, log) {
			got, err := projections.FoldUntil("r", log, at)
			require.NoError(t, err)
			want, err := projections.FoldAll("r", upTo(log, at))
			require.NoError(t, err)
			require.Equal(t, entries(t, want), entries(t, got), "seed %d at %s", seed, at)
		}
		all, err := projections.FoldUntil("r", log, time.Time{})
		require.NoError(t, err)
		want, err := projections.FoldAll("r", log)
		require.NoError(t, err)
		require.Equal(t, entries(t, want), entries(t, all), "the zero instant is now")
	}
}

// TestStateAtProperty: random rooms written through the Appender, interleaved in one stream;
// the state StateAt reads from the log at any T equals the fold of the room's events up to T,
// and its timeline is exactly those events.
func TestStateAtProperty(t *testing.T) {
	env := start(t)
	ctx := t.Context()
	a := eventlog.NewAppender(env.js, "n1")
	rng := rand.New(rand.NewPCG(7, 7))
	const rooms = 4
	gens := make([]*loggen.Gen, rooms)
	for i := range gens {
		gens[i] = loggen.New(fmt.Sprintf("room%d", i), uint64(i), t0, time.Duration(1+i)*time.Second)
	}
	for range 600 {
		i := rng.IntN(rooms)
		e := gens[i].Next()
		if e.Type == events.TypeRoomCreated {
			continue // the Appender adds it
		}
		_, err := a.Append(ctx, e)
		require.NoError(t, err)
	}
	for i := range rooms {
		room := fmt.Sprintf("room%d", i)
		var log []events.Envelope
		require.NoError(t, eventlog.Read(ctx, env.js, eventlog.ReadOptions{Filter: eventlog.RoomEventsFilter(room)},
			func(e events.Envelope) error { log = append(log, e); return nil }))
		require.NotEmpty(t, log)
		for _, at := range instants(rng, log) {
			var timeline []string
			got, err := projections.StateAt(ctx, env.js, room, at, func(e events.Envelope) error {
				timeline = append(timeline, e.ID)
				return nil
			})
			require.NoError(t, err)
			before := upTo(log, at)
			want, err := projections.FoldAll(room, before)
			require.NoError(t, err)
			require.Equal(t, entries(t, want), entries(t, got), "%s at %s", room, at)
			require.Equal(t, len(before) > 0, got.Exists())
			var ids []string
			for _, e := range before {
				ids = append(ids, e.ID)
			}
			require.Equal(t, ids, timeline)
		}
	}
	// A room with no events: nothing, and no error.
	r, err := projections.StateAt(ctx, env.js, "nobody", time.Time{}, nil)
	require.NoError(t, err)
	require.False(t, r.Exists())
}

// BenchmarkStateAt measures a whole-room replay from the log: read, decode, fold.
func BenchmarkStateAt(b *testing.B) {
	for _, n := range []int{10_000, 100_000} {
		b.Run(fmt.Sprint("events=", n), func(b *testing.B) {
			env := start(b)
			ctx := context.Background()
			require.NoError(b, loggen.Write(ctx, env.js, n, loggen.New("big", 1, t0, time.Second).Next))
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				r, err := projections.StateAt(ctx, env.js, "big", time.Time{}, nil)
				require.NoError(b, err)
				require.True(b, r.Exists())
			}
			b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "events/s")
		})
	}
}

// BenchmarkVerifyChains measures the audit chain check of a room from the log.
func BenchmarkVerifyChains(b *testing.B) {
	const n = 100_000
	env := start(b)
	ctx := context.Background()
	require.NoError(b, loggen.Write(ctx, env.js, n, loggen.New("big", 1, t0, time.Second).Next))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		chains, err := projections.VerifyChains(ctx, env.js, "", nil)
		require.NoError(b, err)
		require.Len(b, chains, 1)
		require.Nil(b, chains[0].Break)
		require.Equal(b, n, chains[0].Events)
	}
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "events/s")
}
