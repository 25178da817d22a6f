package whep

import (
	"context"
	"log/slog"
	"maps"
	"slices"
	"time"
)

// TrackChecker tells which of a room's tracks no longer exist. The wiring answers from the
// rooms bucket, and only once it has folded the room's newest event: a track it reports gone
// is gone from the log too.
type TrackChecker interface {
	Gone(ctx context.Context, room string, tracks []string) ([]GoneTrack, error)
}

// GoneTrack is a track a TrackChecker found gone. Unwatched says the node's own track-ends
// watch does not follow it (an edge's track played from the region's bucket): the edge's watch
// of the region's bucket runs over its link, which may be down or just healed, so the recheck
// finding its end first is not a missed end worth a warning.
type GoneTrack struct {
	Track     string
	Unwatched bool
}

// PlayingObserver, if a TrackChecker has it, is told at each round of RunRecheck what the
// node's viewers play (room -> tracks whose end is not known, sorted), so that what the
// checker keeps for played tracks can go when nobody plays them.
type PlayingObserver interface {
	Playing(played map[string][]string)
}

// RecheckEvery is how often RunRecheck asks about the tracks the node's viewers play.
const RecheckEvery = 5 * time.Second

// RunRecheck is the safety net under TrackEnded, until ctx ends: every `every`, it asks check
// which of the tracks this node's viewers play are gone, and ends them as TrackEnded does.
// TrackEnded hears of ends from one watch on the rooms bucket's delete markers; an end that
// watch never delivers (a marker that expired before a lagging or re-created watch read it,
// or one its consumer skipped when it was re-created after a node's death) would otherwise
// leave the viewer of a dead publisher in the room, and in the log, for good. Tracks whose
// end the node heard already are not asked about. One check per room per round, one after
// the other: the cost is a key read per played track per round (check's own bound), not
// per viewer.
func (h *Handler) RunRecheck(ctx context.Context, every time.Duration, check TrackChecker, log *slog.Logger) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		h.playing.forget(h.cfg.Sessions.Now())
		played := h.playing.played()
		if o, ok := check.(PlayingObserver); ok {
			o.Playing(played)
		}
		for _, room := range slices.Sorted(maps.Keys(played)) {
			cctx, cancel := context.WithTimeout(ctx, every)
			gone, err := check.Gone(cctx, room, played[room])
			cancel()
			if ctx.Err() != nil {
				return
			}
			if err != nil {
				log.Debug("whep: tracks not rechecked", "room", room, "err", err)
				continue
			}
			for _, t := range gone {
				if t.Unwatched {
					log.Debug("whep: a track's end found by the recheck (followed over a link, not by the node's own track-ends watch)", "room", room, "track", t.Track)
				} else {
					// The track-ends watch should have told: say so, it is worth a look.
					log.Warn("whep: a track's end found by the recheck, not the track-ends watch", "room", room, "track", t.Track)
				}
				h.TrackEnded(room, t.Track)
			}
		}
	}
}

// played returns, per room, the tracks the room's viewers play whose end is not known, sorted.
func (p *playing) played() map[string][]string {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[string][]string, len(p.byRoom))
	for room, viewers := range p.byRoom {
		set := map[string]bool{}
		for _, v := range viewers {
			for _, t := range v.core.Tracks() {
				if _, ended := p.ended[endedTrack{room, t}]; !ended {
					set[t] = true
				}
			}
		}
		if len(set) > 0 {
			out[room] = slices.Sorted(maps.Keys(set))
		}
	}
	return out
}
