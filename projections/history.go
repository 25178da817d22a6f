package projections

import (
	"context"
	"errors"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetmedia/jetmedia/events"
)

// errReachedAt stops a read at the first event after the instant asked for.
var errReachedAt = errors.New("projections: reached the instant")

// Before reports whether e belongs to the state at instant at: the zero instant means "now"
// (every event), otherwise events stamped at or before at.
func Before(e events.Envelope, at time.Time) bool { return at.IsZero() || !e.Time.After(at) }

// StateAt folds a room's events from the log up to an instant and returns the state then.
//
// The log order is the truth; event times are the writers' clocks. So the state at T is the
// fold of the room's log up to (not including) its first event stamped after T. With one writer
// per room at a time, as the Appender's per-room concurrency control gives, that is every event
// stamped at or before T. The zero T folds the whole log (up to the head when StateAt began).
//
// each, if not nil, sees every folded event in order (a timeline); an error from it stops the
// replay. A room with no events before T comes back with Exists() false.
func StateAt(ctx context.Context, js jetstream.JetStream, room string, at time.Time, each func(events.Envelope) error) (Room, error) {
	r, _, err := StateAtFrom(ctx, js, nil, room, at, each)
	return r, err
}

// FoldUntil is StateAt's pure form: the fold of evs (one room's, in log order) up to the first
// event stamped after at.
func FoldUntil(room string, evs []events.Envelope, at time.Time) (Room, error) {
	r := NewRoom(room)
	for _, e := range evs {
		if !Before(e, at) {
			break
		}
		var err error
		if r, err = Fold(r, e); err != nil {
			return r, err
		}
	}
	return r, nil
}
