package mediabus

import (
	"fmt"

	"github.com/nats-io/nats.go"
)

// LevelPrefix starts the subjects of the rooms' audio-level reports.
const LevelPrefix = "lv"

// LevelSubject carries the level reports of a room's audio tracks: lv.<room>. Each publisher's
// node sends one per track every 100 ms while it speaks and every second while it is quiet;
// every node forwarding the room's audio ranks the speakers from them.
func LevelSubject(room string) string { return LevelPrefix + "." + room }

// PublishLevel sends one encoded level report (audiolevel.Report) of a room's track. It goes
// on the feedback connection, which echoes: the node's own ranking gets its own reports.
func (b *MediaBus) PublishLevel(room string, report []byte) error {
	subj := LevelSubject(room)
	if err := b.nc.Publish(subj, report); err != nil {
		return fmt.Errorf("pipeline: level publish %s: %w", subj, err)
	}
	return nil
}

// SubscribeLevels delivers a room's level reports to fn, one at a time. fn must not keep
// data.
func (b *MediaBus) SubscribeLevels(room string, fn func(data []byte)) (*nats.Subscription, error) {
	subj := LevelSubject(room)
	sub, err := b.nc.Subscribe(subj, func(m *nats.Msg) { fn(m.Data) })
	if err != nil {
		return nil, fmt.Errorf("pipeline: level subscribe %s: %w", subj, err)
	}
	return sub, nil
}
