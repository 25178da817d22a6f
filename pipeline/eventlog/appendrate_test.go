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
