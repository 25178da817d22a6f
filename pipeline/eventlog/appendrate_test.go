package eventlog_test

import (
	"context"
	"fmt"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jetmedia/jetmedia/events"
	"github.com/jetmedia/jetmedia/pipeline/eventlog"
)

// BenchmarkAppendRooms measures the Appender into a live log: one writer per room, each
// appending its events one at a time (as a session's outbox does), rooms concurrently. An op
// is 2048 events spread over the rooms; events/s is the figure to compare.
func BenchmarkAppendRooms(b *testing.B) {
	for _, rooms := range []int{1, 16, 64} {
		b.Run(fmt.Sprint("rooms=", rooms), func(b *testing.B) {
			a := eventlog.NewAppender(start(b).js, "n1")
			runWriters(b, a, roomWriters(b, a, rooms))
		})
	}
}

// roomWriters makes one writer per room, 2048 events over them all, after one append to
// each room (its creation and head read are not measured).
func roomWriters(b *testing.B, a *eventlog.Appender, rooms int) [][]events.Envelope {
	const perOp = 2048
	evs := make([][]events.Envelope, rooms)
	for r := range evs {
		room := fmt.Sprintf("room%d", r)
		if _, err := a.Append(context.Background(), joined(b, room, "warm")); err != nil {
			b.Fatal(err)
		}
		for range perOp / rooms {
			evs[r] = append(evs[r], joined(b, room, "p"))
		}
	}
	return evs
}

// BenchmarkAppendGated is BenchmarkAppendRooms over 64 rooms with the appender a node makes:
// gated by its server's storage guard (eventlog.WithGate), which every append consults.
func BenchmarkAppendGated(b *testing.B) {
	n := start(b)
	a := eventlog.NewAppender(n.js, "n1", eventlog.WithGate(n.srv))
	runWriters(b, a, roomWriters(b, a, 64))
}

// runWriters runs the benchmark's ops: in each, one goroutine per writer appends the writer's
// events one at a time, each as a new event (a fresh id, not a deduplicated retry). It
// reports events/s and the process's CPU time per event.
func runWriters(b *testing.B, a *eventlog.Appender, writers [][]events.Envelope) {
	ctx := context.Background()
	perOp := 0
	for _, evs := range writers {
		perOp += len(evs)
	}
	b.ReportAllocs()
	cpu := startCPU(b)
	b.ResetTimer()
	for b.Loop() {
		var wg sync.WaitGroup
		for _, evs := range writers {
			wg.Go(func() {
				for _, e := range evs {
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
	cpu.report(perOp * b.N)
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
			runWriters(b, a, evs)
		})
	}
}

// cpuMeter reports the process's CPU time (user + system: the writers, the client and the
// embedded server together) per event. On the shared 2-core machine events/s swings with the
// other tenants' load; CPU per event moves far less, so it is the figure to compare builds by,
// and 2 cores / (CPU per event) is the rate a quiet machine could reach at best.
type cpuMeter struct {
	b     *testing.B
	start time.Duration
}

func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatalf("getrusage: %v", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func startCPU(b *testing.B) cpuMeter { return cpuMeter{b: b, start: processCPU(b)} }

func (c cpuMeter) report(events int) {
	if events > 0 {
		c.b.ReportMetric(float64((processCPU(c.b)-c.start).Microseconds())/float64(events), "cpu-us/event")
	}
}
