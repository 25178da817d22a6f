package tests

import (
	"context"
	"encoding/binary"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/egress/forward"
	"github.com/jetmedia/jetmedia/pipeline"
)

type countWriter struct{ n atomic.Int64 }

func (w *countWriter) Write(b []byte) (int, error) { w.n.Add(1); return len(b), nil }

// BenchmarkMediaPath is the whole forward path inside one node: a publisher's packet onto
// its media subject (TrackSender.Send), through the embedded NATS server, to the node's
// fan-out, rewritten and written for each viewer. ns/op is per published packet.
func BenchmarkMediaPath(b *testing.B) {
	for _, viewers := range []int{1, 10, 100} {
		b.Run(fmt.Sprintf("viewers=%d", viewers), func(b *testing.B) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			srv, err := pipeline.StartServer(ctx, pipeline.ServerConfig{Name: "bench"})
			require.NoError(b, err)
			defer srv.Shutdown()
			pubConn, err := srv.Connect("pub")
			require.NoError(b, err)
			defer pubConn.Close()
			subConn, err := srv.Connect("sub")
			require.NoError(b, err)
			defer subConn.Close()
			hub := forward.NewHub(pipeline.NewMediaBus(subConn))
			defer hub.Close()
			w := &countWriter{}
			for i := range viewers {
				_, detach, err := hub.Attach("room", "track", forward.NewOutput(uint32(1000+i), 96, w))
				require.NoError(b, err)
				defer detach()
			}
			require.NoError(b, subConn.Flush())
			sender := pipeline.NewMediaBus(pubConn).Sender("room", "track", "0")
			pkt := make([]byte, 1200)
			pkt[0] = 0x80
			binary.BigEndian.PutUint32(pkt[8:], 42)
			b.SetBytes(int64(len(pkt)))
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				binary.BigEndian.PutUint16(pkt[2:], uint16(i))
				if err := sender.Send(pkt); err != nil {
					b.Fatal(err)
				}
				// Bound the backlog so packets are not dropped as a slow consumer's.
				if i%1024 == 1023 {
					for w.n.Load() < int64((i+1-2048)*viewers) {
						time.Sleep(50 * time.Microsecond)
					}
				}
			}
			want := int64(b.N * viewers)
			for w.n.Load() < want {
				if ctx.Err() != nil {
					b.Fatalf("delivered %d of %d", w.n.Load(), want)
				}
				time.Sleep(100 * time.Microsecond)
			}
		})
	}
}

// BenchmarkMediaPathLocal is the same path as the node runs it for its own publishers' packets:
// straight to this node's fan-out on the publisher's goroutine, and to NATS only when another
// node wants the track (here none does). ns/op is per published packet.
func BenchmarkMediaPathLocal(b *testing.B) {
	for _, viewers := range []int{1, 10, 100} {
		b.Run(fmt.Sprintf("viewers=%d", viewers), func(b *testing.B) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			srv, err := pipeline.StartServer(ctx, pipeline.ServerConfig{Name: "bench"})
			require.NoError(b, err)
			defer srv.Shutdown()
			fb, err := srv.Connect("feedback")
			require.NoError(b, err)
			defer fb.Close()
			rtp, err := srv.Connect("rtp", nats.NoEcho())
			require.NoError(b, err)
			defer rtp.Close()
			bus, err := pipeline.NewLocalMediaBus(fb, rtp, srv.Interest)
			require.NoError(b, err)
			// The publisher's sender exists before viewers can find the track, as on a node.
			sender := bus.Sender("room", "track", "0")
			hub := forward.NewHub(bus)
			defer hub.Close()
			w := &countWriter{}
			for i := range viewers {
				_, detach, err := hub.Attach("room", "track", forward.NewOutput(uint32(1000+i), 96, w))
				require.NoError(b, err)
				defer detach()
			}
			pkt := make([]byte, 1200)
			pkt[0] = 0x80
			binary.BigEndian.PutUint32(pkt[8:], 42)
			b.SetBytes(int64(len(pkt)))
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				binary.BigEndian.PutUint16(pkt[2:], uint16(i))
				if err := sender.Send(pkt); err != nil {
					b.Fatal(err)
				}
			}
			if w.n.Load() != int64(b.N*viewers) {
				b.Fatalf("delivered %d of %d", w.n.Load(), b.N*viewers)
			}
		})
	}
}
