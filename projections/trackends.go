package projections

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// TrackEndsHeartbeat is how often the server shows the track-ends watch that it is alive. A
// watch whose consumer lived on a node that died learns it after two missed heartbeats and
// starts over on a live one: with nats.go's KV watch (5 s heartbeats, a push consumer) that
// took about 10 s, which put a lost publisher's remote viewers past 15 s.
const TrackEndsHeartbeat = time.Second

// WatchTrackEnds calls ended(room, track) for every track the rooms bucket drops from now on
// (unpublished, or its publisher left or was lost), until the returned ConsumeContext is
// stopped. One watch per node serves every session there.
func WatchTrackEnds(ctx context.Context, js jetstream.JetStream, bucket string, ended func(room, track string)) (jetstream.ConsumeContext, error) {
	prefix := "$KV." + bucket + "."
	cons, err := js.OrderedConsumer(ctx, "KV_"+bucket, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{prefix + "*.track.*"},
		DeliverPolicy:  jetstream.DeliverNewPolicy,
		HeadersOnly:    true,
	})
	if err != nil {
		return nil, fmt.Errorf("projections: watch the %s bucket's tracks: %w", bucket, err)
	}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		// A delete or purge marker (KV-Operation), or one the server writes when a marker's
		// TTL removes the key (Nats-Marker-Reason): either way the key is gone.
		h := m.Headers()
		if h.Get("KV-Operation") == "" && h.Get("Nats-Marker-Reason") == "" {
			return
		}
		// <room>.track.<track>; ids hold no dots.
		if parts := strings.Split(strings.TrimPrefix(m.Subject(), prefix), "."); len(parts) == 3 {
			ended(parts[0], parts[2])
		}
	}, jetstream.PullHeartbeat(TrackEndsHeartbeat), jetstream.PullExpiry(5*TrackEndsHeartbeat))
	if err != nil {
		return nil, fmt.Errorf("projections: watch the %s bucket's tracks: %w", bucket, err)
	}
	return cc, nil
}
