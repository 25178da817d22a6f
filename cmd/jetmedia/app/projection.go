package app

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetmedia/jetmedia/pipeline/eventlog"
	"github.com/jetmedia/jetmedia/projections"
	"github.com/jetmedia/jetmedia/projections/projector"
)

// ProjectionDurable is the durable consumer the rooms projection reads; its ack floor is the
// projection's checkpoint. There is one for the system, driven by the node that holds the
// rooms projection's lease (projections/projector): when every node folded the log into the
// one bucket, each with its own durable, their conditional writes conflicted, and after a
// stream leader's death the bucket lagged the log by up to a minute. The node taking the lease
// over recreates the durable at its ack floor and folds on from there; a room's last_seq makes
// the events its previous writer wrote but did not acknowledge no-ops.
const ProjectionDurable = "rooms-projector"

// olderProjectionDurable is the prefix of older versions' projection durables: "proj-rooms",
// which all nodes shared, and "proj-rooms-<node>", each node's own.
const olderProjectionDurable = "proj-rooms"

// startProjection takes part in the election of the rooms projection's writer; while this
// node holds the lease it runs the projection (runProjection).
func (n *Node) startProjection(ctx context.Context) error {
	var err error
	if n.snaps, err = projections.OpenSnapshotStore(ctx, n.js, n.log, projections.SnapshotKeep(n.cfg.SnapshotsKeep)); err != nil {
		n.log.Warn("room snapshots off: replays and a cold projection fold whole logs", "err", err)
		n.snaps = nil
	}
	kv, err := projector.Declare(ctx, n.js, n.cfg.Storage)
	if err != nil {
		return err
	}
	n.projector, err = projector.New(projector.Config{KV: kv, Key: projector.KeyRooms, Node: n.cfg.Name,
		Timing: projector.Timing{Renew: n.cfg.Presence.Renew, TTL: n.cfg.Presence.TTL}, Logger: n.log})
	if err != nil {
		return err
	}
	pctx, cancel := context.WithCancel(ctx)
	n.stopProjection = cancel
	n.wg.Go(func() { n.projector.Run(pctx, n.runProjection) })
	return nil
}

// runProjection folds the log into the rooms bucket until ctx ends (the lease was lost, or the
// node stops): batches of the projection's durable folded by a KVRunner (one hand-over and one
// write of the changed keys per batch), and room snapshots.
func (n *Node) runProjection(ctx context.Context) error {
	c, err := eventlog.NewBatchConsumer(n.js, eventlog.BatchConsumerConfig{
		Durable: ProjectionDurable, Filter: eventlog.EventsSubjects, Logger: n.log,
		Batch: projections.KVBatch, StartSeq: n.projectionStart(ctx), Gapless: true,
	})
	if err != nil {
		return err
	}
	if err := c.Declare(ctx); err != nil {
		return err
	}
	n.dropOlderDurables(ctx)
	runner := projections.NewKVRunner(n.rooms, n.log)
	runner.UseLog(n.js)
	var wg sync.WaitGroup
	defer wg.Wait()
	if n.snaps != nil {
		snapshotter := projections.NewSnapshotter(n.snaps, projections.SnapshotEvery, n.log)
		runner.UseSnapshots(n.snaps, projections.SnapshotEvery, snapshotter.Folded)
		wg.Go(func() { snapshotter.Run(ctx) })
	}
	return c.Run(ctx, runner.HandleBatch)
}

// projectionStart is where the projection's durable starts when there is none yet: after
// what older versions' durables folded, or, on an empty bucket, after what the rooms'
// snapshots hold (written into the bucket first); 0 (the start, or where the existing durable
// is) otherwise.
func (n *Node) projectionStart(ctx context.Context) uint64 {
	if _, err := n.js.Consumer(ctx, eventlog.StreamEvents, ProjectionDurable); err == nil {
		return 0
	}
	if floor := n.olderProjectionFloor(ctx); floor > 0 || n.snaps == nil {
		return floor
	}
	start, err := projections.SeedFromSnapshots(ctx, n.js, n.rooms, n.snaps)
	if err != nil {
		n.log.Warn("cold rooms projection starts from the first event: seeding it from snapshots failed", "err", err)
		return 0
	}
	if start > 1 {
		n.log.Info("cold rooms projection seeded from room snapshots", "start_seq", start)
	}
	return start
}

// olderProjectionFloor is where the projection's new durable starts on a log older versions'
// durables folded: after the furthest ack floor among them (each runner acknowledged only what
// the bucket held, so the bucket holds every event up to it); 0 (the start) when there is none.
func (n *Node) olderProjectionFloor(ctx context.Context) uint64 {
	var floor uint64
	for _, info := range n.olderDurables(ctx) {
		floor = max(floor, info.AckFloor.Stream)
	}
	if floor == 0 {
		return 0
	}
	return floor + 1
}

// olderDurables lists the projection durables of older versions on the log.
func (n *Node) olderDurables(ctx context.Context) []*jetstream.ConsumerInfo {
	s, err := n.js.Stream(ctx, eventlog.StreamEvents)
	if err != nil {
		return nil
	}
	var out []*jetstream.ConsumerInfo
	list := s.ListConsumers(ctx)
	for info := range list.Info() {
		if info.Name == olderProjectionDurable || strings.HasPrefix(info.Name, olderProjectionDurable+"-") {
			out = append(out, info)
		}
	}
	if err := list.Err(); err != nil {
		n.log.Warn("listing older projection durables", "err", err)
	}
	return out
}

// dropOlderDurables deletes older versions' projection durables once the projection's own
// exists (it started after them): nobody reads them any more. A node of an older version
// still running declares its own again.
func (n *Node) dropOlderDurables(ctx context.Context) {
	for _, d := range n.olderDurables(ctx) {
		if err := n.js.DeleteConsumer(ctx, eventlog.StreamEvents, d.Name); err != nil {
			n.log.Warn("deleting an older projection durable", "consumer", d.Name, "err", err)
		}
	}
}

// ProjectionLag is the number of events the rooms projection has not applied yet, whichever
// node writes it: a node standing by is as up to date as the node writing the bucket.
func (n *Node) ProjectionLag(ctx context.Context) (uint64, error) {
	c, err := n.js.Consumer(ctx, eventlog.StreamEvents, ProjectionDurable)
	if err != nil {
		return 0, fmt.Errorf("projection consumer: %w", err)
	}
	info, err := c.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("projection consumer: %w", err)
	}
	return info.NumPending + uint64(info.NumAckPending), nil
}

// ProjectionWriter is the node writing the rooms projection as this node last read its lease
// ("" before the first read), and whether it is this node.
func (n *Node) ProjectionWriter() (string, bool) {
	return n.projector.Holder(), n.projector.Leading()
}

// WaitProjected waits until the rooms projection has applied every stored event.
func (n *Node) WaitProjected(ctx context.Context) error {
	for {
		lag, err := n.ProjectionLag(ctx)
		if err == nil && lag == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("projection lag %d: %w", lag, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}
