package app

import (
	"context"

	"github.com/jetmedia/jetmedia/pipeline/eventlog"
	"github.com/jetmedia/jetmedia/projections"
)

// watchTrackEnds tells ended(room, track) of every track the rooms bucket drops (unpublished,
// or its publisher left or was lost), until ctx ends: WHEP sessions that play it end then.
// One watch per node, not one per session.
func (n *Node) watchTrackEnds(ctx context.Context, ended func(room, track string)) error {
	cc, err := projections.WatchTrackEnds(ctx, n.js, eventlog.BucketRooms, ended)
	if err != nil {
		return err
	}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		<-ctx.Done()
		cc.Stop()
		<-cc.Closed()
	}()
	return nil
}
