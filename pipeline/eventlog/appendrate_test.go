package eventlog_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/jetmedia/jetmedia/events"
	"github.com/jetmedia/jetmedia/pipeline/eventlog"
)

// BenchmarkAppendRooms measures the Appender into a live log: one writer per room, each
// appending its events one at a time (as a session's outbox does), rooms concurrently. An op
// is 2048 events spread over the rooms; events/s is the figure to compare.
func BenchmarkAppendRooms(b *testing.B) {
	for _, rooms := range []int{1, 16, 64} {
		b.Run(fmt.Sprint("rooms=", rooms), func(b *testing.B) {
			const perOp = 2048
			n := start(b)
			ctx := context.Background()
			a := eventlog.NewAppender(n.js, "n1")
			evs := make([][]events.Envelope, rooms)
			for r := range evs {
				room := fmt.Sprintf("room%d", r)
				if _, err := a.Append(ctx, joined(b, room, "warm")); err != nil {
					b.Fatal(err)
				}
				for range perOp / rooms {
					evs[r] = append(evs[r], joined(b, room, "p"))
				}
			}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				var wg sync.WaitGroup
				for r := range evs {
					wg.Go(func() {
						for _, e := range evs[r] {
							e.ID = events.NewID() // a new event each time, not a deduplicated retry
							if _, err := a.Append(ctx, e); err != nil {
								b.Error(err)
								return
							}
						}
					})
				}
				wg.Wait()
			}
			b.ReportMetric(float64(perOp/rooms*rooms)*float64(b.N)/b.Elapsed().Seconds(), "events/s")
		})
	}
}

// BenchmarkAppendSessions measures the Appender as a live node loads it: 64 writers (sessions,
// each appending its events one at a time and waiting for each) spread over the rooms, so one
// room has 64 concurrent writers and 64 rooms one each. An op is 2048 events; events/s is the
// figure to compare.
func BenchmarkAppendSessions(b *testing.B) {
	const sessions, perOp = 64, 2048
	for _, rooms := range []int{1, 16, 64} {
		b.Run(fmt.Sprint("rooms=", rooms), func(b *testing.B) {
			n := start(b)
			ctx := context.Background()
			a := eventlog.NewAppender(n.js, "n1")
			evs := make([][]events.Envelope, sessions)
			for s := range evs {
				room := fmt.Sprintf("room%d", s%rooms)
				if _, err := a.Append(ctx, joined(b, room, "warm")); err != nil {
					b.Fatal(err)
				}
				for range perOp / sessions {
					evs[s] = append(evs[s], joined(b, room, "p"))
				}
			}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				var wg sync.WaitGroup
				for s := range evs {
					wg.Go(func() {
						for _, e := range evs[s] {
							e.ID = events.NewID()
							if _, err := a.Append(ctx, e); err != nil {
								b.Error(err)
								return
							}
						}
					})
				}
				wg.Wait()
			}
			b.ReportMetric(float64(perOp)*float64(b.N)/b.Elapsed().Seconds(), "events/s")
		})
	}
}
