package cluster

import (
	"context"
	"encoding/binary"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/cmd/jetmedia/app"
	"github.com/jetmedia/jetmedia/events"
	"github.com/jetmedia/jetmedia/pipeline/eventlog"
)

// BenchmarkAppendReplicas: one event appended and acknowledged (the appender's optimistic
// concurrency per room included), one after another, on a node alone (R1, file storage) and
// through a node of three routed nodes (R3: the stream's leader stores it and a follower
// confirms before the ack). The nodes are whole jetmedia nodes, their rooms projection folding
// the events meanwhile. p50 and p99 of the append are reported beside the mean.
func BenchmarkAppendReplicas(b *testing.B) {
	solo := nodeConfig(b, "solo")
	r1 := startNodes(b, solo)[0]
	ports := freePorts(b, 3)
	routes := make([]string, 3)
	for i, p := range ports {
		routes[i] = "nats://127.0.0.1:" + strconv.Itoa(p)
	}
	cfgs := make([]app.Config, 3)
	for i, name := range []string{"r1", "r2", "r3"} {
		cfgs[i] = nodeConfig(b, name)
		cfgs[i].NATSListen, cfgs[i].ClusterListen, cfgs[i].Routes = "127.0.0.1:0", "127.0.0.1:"+strconv.Itoa(ports[i]), routes
	}
	r3 := startNodes(b, cfgs...)
	for _, c := range []struct {
		name string
		node *app.Node
	}{{"R1", r1}, {"R3", r3[1]}} {
		b.Run(c.name, func(b *testing.B) {
			s, err := c.node.JetStream().Stream(ctxT(b, 10*time.Second), "EVENTS")
			require.NoError(b, err)
			if ci := s.CachedInfo().Cluster; ci != nil {
				b.Logf("%s: EVENTS R%d, leader %s, appending through %s", c.name, s.CachedInfo().Config.Replicas, ci.Leader, c.node.Name())
			}
			appender := eventlog.NewAppender(c.node.JetStream(), "bench")
			room := newRoom("bench")
			ctx := ctxT(b, 10*time.Minute)
			lat := make([]time.Duration, 0, b.N)
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				e, err := events.New(events.Meta{Room: room, Actor: "bench", Node: "bench", Time: time.Now()},
					events.PeerJoined{Peer: "p" + strconv.Itoa(i), Transport: "whep", Role: "viewer", Node: "bench"})
				if err != nil {
					b.Fatal(err)
				}
				start := time.Now()
				actx, cancel := context.WithTimeout(ctx, 5*time.Second)
				_, err = appender.Append(actx, e)
				cancel()
				if err != nil {
					b.Fatal(err)
				}
				lat = append(lat, time.Since(start))
			}
			b.StopTimer()
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
		})
	}
}

// BenchmarkGatewayHop: what crossing a gateway adds to a media packet. Two regions joined by a
// TLS gateway (startRegions); each op publishes one 1,200-byte packet on a media subject from a
// connection to east, received by a subscriber on east (the same node) and one on west (across
// the gateway); send times ride in the payload (one process, one clock). p50/p99 of each leg
// are reported; the WebRTC legs at both ends are the same with and without the gateway.
func BenchmarkGatewayHop(b *testing.B) {
	east, west, _, _ := startRegions(b)
	pub, err := east.Server().Connect("hop-pub")
	require.NoError(b, err)
	defer pub.Close()
	subject := "md.hop-" + strconv.Itoa(int(time.Now().UnixNano()%1e6)) + ".t.0"
	type leg struct {
		name string
		lat  chan time.Duration
	}
	legs := []leg{{"same-node", make(chan time.Duration, b.N)}, {"gateway", make(chan time.Duration, b.N)}}
	for i, n := range []*app.Node{east, west} {
		nc, err := n.Server().Connect("hop-sub")
		require.NoError(b, err)
		defer nc.Close()
		ch := legs[i].lat
		_, err = nc.Subscribe(subject, func(m *nats.Msg) {
			sent := int64(binary.BigEndian.Uint64(m.Data))
			select {
			case ch <- time.Duration(time.Now().UnixNano() - sent):
			default:
			}
		})
		require.NoError(b, err)
		require.NoError(b, nc.Flush())
	}
	// West's interest reaches east's gateway: wait until a packet crosses.
	probe := make([]byte, 1200)
	require.Eventually(b, func() bool {
		binary.BigEndian.PutUint64(probe, uint64(time.Now().UnixNano()))
		require.NoError(b, pub.Publish(subject, probe))
		select {
		case <-legs[1].lat:
			return true
		case <-time.After(50 * time.Millisecond):
			return false
		}
	}, 10*time.Second, 10*time.Millisecond, "west's subscription reaches east")
	time.Sleep(200 * time.Millisecond)
	for _, l := range legs {
		for len(l.lat) > 0 {
			<-l.lat
		}
	}
	b.ResetTimer()
	for range b.N {
		buf := make([]byte, 1200)
		binary.BigEndian.PutUint64(buf, uint64(time.Now().UnixNano()))
		require.NoError(b, pub.Publish(subject, buf))
		time.Sleep(time.Millisecond) // a paced stream (~1,000 packets/s), not a burst
	}
	b.StopTimer()
	for _, l := range legs {
		var lat []time.Duration
		timeout := time.After(10 * time.Second)
	collect:
		for len(lat) < b.N {
			select {
			case d := <-l.lat:
				lat = append(lat, d)
			case <-timeout:
				break collect
			}
		}
		require.NotEmpty(b, lat, l.name)
		slices.Sort(lat)
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), l.name+"-p50-µs")
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), l.name+"-p99-µs")
		b.ReportMetric(float64(len(lat))/float64(b.N), l.name+"-delivered")
	}
}
