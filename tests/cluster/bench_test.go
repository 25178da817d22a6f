package cluster

import (
	"context"
	"slices"
	"strconv"
	"testing"
	"time"

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
