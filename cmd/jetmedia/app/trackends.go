package app

import (
	"context"
	"fmt"
	"strings"

	"github.com/nats-io/nats.go/jetstream"
)

// watchTrackEnds tells ended(room, track) of every track the rooms bucket drops (unpublished,
// or its publisher left or was lost), until ctx ends: WHEP sessions that play it end then.
// One watch per node, not one per session.
func (n *Node) watchTrackEnds(ctx context.Context, ended func(room, track string)) error {
	w, err := n.rooms.Watch(ctx, "*.track.*", jetstream.UpdatesOnly())
	if err != nil {
		return fmt.Errorf("watch the rooms bucket's tracks: %w", err)
	}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		defer func() { _ = w.Stop() }()
		for {
			select {
			case <-ctx.Done():
				return
			case e, ok := <-w.Updates():
				if !ok {
					return
				}
				if e == nil || (e.Operation() != jetstream.KeyValueDelete && e.Operation() != jetstream.KeyValuePurge) {
					continue
				}
				// <room>.track.<track>; ids hold no dots.
				if parts := strings.Split(e.Key(), "."); len(parts) == 3 {
					ended(parts[0], parts[2])
				}
			}
		}
	}()
	return nil
}
