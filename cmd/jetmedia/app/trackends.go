package app

import (
	"context"
	"log/slog"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetmedia/jetmedia/pipeline/eventlog"
	"github.com/jetmedia/jetmedia/projections"
)

// watchTrackEnds tells ended(room, track) of every track the rooms bucket drops (unpublished,
// or its publisher left or was lost), until ctx ends: WHEP sessions that play it end then.
// One watch per node, not one per session, kept by projections.RunTrackEnds on a goroutine
// the node's wait group owns; it returns once the watch is in place, or its error.
func (n *Node) watchTrackEnds(ctx context.Context, ended func(room, track string)) error {
	return n.runBucketWatch(ctx, func(ctx context.Context, js jetstream.JetStream, log *slog.Logger, up func()) error {
		return projections.RunTrackEnds(ctx, js, eventlog.BucketRooms, ended, log, up)
	})
}

// watchRegionTrackEnds, on an edge, tells ended(room, track) of every track the region's rooms
// bucket drops, until ctx ends, with a watch over the edge's link (projections.RunTrackEndsOverLink,
// on a goroutine the node's wait group owns): the edge's viewers of a track published in the
// region or on another edge (edgecatalog.go) hear of its end as promptly as those of its own
// tracks, not at the next WHEP recheck. It does not wait for the link. The edge's own tracks
// are told twice (the region's bucket holds them too, through the source of the edge's log);
// a told end is idempotent. A node that is not an edge has no region and runs none.
func (n *Node) watchRegionTrackEnds(ctx context.Context, ended func(room, track string)) {
	if n.region == nil {
		return
	}
	n.wg.Go(func() { projections.RunTrackEndsOverLink(ctx, n.region, eventlog.BucketRooms, ended, n.log) })
}

// watchRoomRecords tells written(room, seq) of every write of a room's record in the rooms
// bucket, until ctx ends: room SDK sessions check their own watch of the room against it.
// One watch per node (projections.RunRoomRecords), run as watchTrackEnds runs its own.
func (n *Node) watchRoomRecords(ctx context.Context, written func(room string, seq uint64)) error {
	return n.runBucketWatch(ctx, func(ctx context.Context, js jetstream.JetStream, log *slog.Logger, up func()) error {
		return projections.RunRoomRecords(ctx, js, eventlog.BucketRooms, written, log, up)
	})
}

// runBucketWatch runs a node-wide watch on a goroutine the node's wait group owns and returns
// once it is in place (run calls up), or its error.
func (n *Node) runBucketWatch(ctx context.Context, run func(context.Context, jetstream.JetStream, *slog.Logger, func()) error) error {
	up := make(chan struct{})
	done := make(chan error, 1)
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		done <- run(ctx, n.js, n.log, func() { close(up) })
	}()
	select {
	case <-up:
		return nil
	case err := <-done:
		if err == nil {
			err = ctx.Err()
		}
		return err
	}
}
