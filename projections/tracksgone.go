package projections

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// TrackKey is the key of a room's track.
func TrackKey(room, track string) string { return room + "." + keyTrack + "." + track }

// TracksGone returns those of room's tracks that the rooms bucket kv no longer holds, judged
// on the room's state once the bucket has folded the room's newest event in stream (the log),
// waiting up to wait for it. A cheap read of each track's key comes first (a direct get, no
// consumer); only when one is missing is the room read in full, so a room whose tracks are
// all there costs one get per track. A key read as missing from a lagging replica, or a
// bucket that has not caught up with the log within wait, is no answer: nothing is reported
// gone then, and the caller asks again later.
func TracksGone(ctx context.Context, kv jetstream.KeyValue, stream jetstream.Stream, room string, tracks []string, wait time.Duration) ([]string, error) {
	var missing []string
	for _, t := range tracks {
		_, err := kv.Get(ctx, TrackKey(room, t))
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted):
			missing = append(missing, t)
		case err != nil:
			return nil, fmt.Errorf("projections: read track %s of room %s: %w", t, room, err)
		}
	}
	if len(missing) == 0 {
		return nil, nil
	}
	r, current, err := LoadRoomCurrent(ctx, kv, stream, room, wait)
	if err != nil || !current {
		return nil, err
	}
	var gone []string
	for _, t := range missing {
		if _, ok := r.Tracks[t]; !ok {
			gone = append(gone, t)
		}
	}
	return gone, nil
}
