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
	"github.com/jetmedia/jetmedia/pipeline/mediabus"
	"github.com/jetmedia/jetmedia/pipeline/natsnode"
)

type countWriter struct{ n atomic.Int64 }

func (w *countWriter) Write(b []byte) (int, error) { w.n.Add(1); return len(b), nil }

// benchServer is an embedded NATS server without JetStream, shut down when the benchmark ends.
func benchServer(b *testing.B, ctx context.Context) *natsnode.Server {
	b.Helper()
	srv, err := natsnode.StartServer(ctx, natsnode.ServerConfig{Name: "bench"})
	require.NoError(b, err)
	b.Cleanup(srv.Shutdown)
	return srv
}

// benchConn is a client connection to srv, closed when the benchmark ends.
func benchConn(b *testing.B, srv *natsnode.Server, name string, opts ...nats.Option) *nats.Conn {
	b.Helper()
	nc, err := srv.Connect(name, opts...)
	require.NoError(b, err)
	b.Cleanup(nc.Close)
	return nc
}

// attachViewers attaches n outputs of room/track to hub, detached when the benchmark ends;
// every packet written to any of them counts in the writer returned.
func attachViewers(b *testing.B, hub *forward.Hub, n int) *countWriter {
	b.Helper()
	w := &countWriter{}
	for i := range n {
		_, detach, err := hub.Attach("room", "track", forward.NewOutput(uint32(1000+i), 96, w))
		require.NoError(b, err)
		b.Cleanup(detach)
	}
	return w
}

// benchPacket is a 1200-byte RTP packet of SSRC 42; the benchmarks set its sequence number.
func benchPacket() []byte {
	pkt := make([]byte, 1200)
	pkt[0] = 0x80
	binary.BigEndian.PutUint32(pkt[8:], 42)
	return pkt
}

// BenchmarkMediaPath is the whole forward path inside one node: a publisher's packet onto
// its media subject (TrackSender.Send), through the embedded NATS server, to the node's
// fan-out, rewritten and written for each viewer. ns/op is per published packet.
func BenchmarkMediaPath(b *testing.B) {
	for _, viewers := range []int{1, 10, 100} {
		b.Run(fmt.Sprintf("viewers=%d", viewers), func(b *testing.B) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			srv := benchServer(b, ctx)
			pubConn, subConn := benchConn(b, srv, "pub"), benchConn(b, srv, "sub")
			hub := forward.NewHub(mediabus.NewMediaBus(subConn))
			b.Cleanup(hub.Close) // after the viewers detach, before the connections close
			w := attachViewers(b, hub, viewers)
			require.NoError(b, subConn.Flush())
			sender := mediabus.NewMediaBus(pubConn).Sender("room", "track", "0")
			pkt := benchPacket()
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
			srv := benchServer(b, ctx)
			bus, err := mediabus.NewLocalMediaBus(benchConn(b, srv, "feedback"), benchConn(b, srv, "rtp", nats.NoEcho()), srv.Interest)
			require.NoError(b, err)
			// The publisher's sender exists before viewers can find the track, as on a node.
			sender := bus.Sender("room", "track", "0")
			hub := forward.NewHub(bus)
			b.Cleanup(hub.Close) // after the viewers detach, before the connections close
			w := attachViewers(b, hub, viewers)
			pkt := benchPacket()
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
