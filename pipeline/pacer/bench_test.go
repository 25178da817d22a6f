package pacer_test

import (
	"testing"
	"time"

	"github.com/jetmedia/jetmedia/pipeline/pacer"
)

// BenchmarkSendUnlimited is the per-packet cost on a connection whose estimate carries what
// it is sent: one Send that lets the packet out.
func BenchmarkSendUnlimited(b *testing.B) {
	p := newPacer(b, pacer.Config{}, 20_000_000)
	b.ReportAllocs()
	now := time.Duration(0)
	for i := 0; b.Loop(); i++ {
		now += 400 * time.Microsecond // 1200 B per 400 us: 24 Mbit/s, under 2.5 x 20
		if !p.TrySend(pacer.Video, 1200) {
			p.Send(now, pacer.Video, 1200)
		}
	}
}

// BenchmarkQueued is the per-packet cost on a limited connection: Send refuses, Push, Drop
// checked, and the packet popped later.
func BenchmarkQueued(b *testing.B) {
	p := newPacer(b, pacer.Config{}, 1_000_000)
	for p.Send(0, pacer.Video, 1200) {
	}
	b.ReportAllocs()
	now := time.Duration(0)
	for i := 0; b.Loop(); i++ {
		now += 3 * time.Millisecond // 1200 B every 3 ms = 3.2 Mbit/s, over 2.5: a queue stays
		if !p.Send(now, pacer.Video, 1200) {
			p.Push(now, 1200, i)
		}
		for {
			if _, ok := p.Drop(now); !ok {
				break
			}
		}
		p.Pop(now)
	}
}
