package projections

import (
	"context"
	"maps"
	"slices"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetmedia/jetmedia/events"
	"github.com/jetmedia/jetmedia/pipeline/eventlog"
)

// VerifyChains checks the hash chain (see events.Chain) of one room, or of every room when room
// is "", in one pass over the stored events up to the head as it was when it started. It
// returns each room's chain, sorted by room; a broken chain has Break set and is not an error.
// progress, if not nil, is called with each event's stream sequence.
func VerifyChains(ctx context.Context, js jetstream.JetStream, room string, progress func(seq uint64)) ([]*events.Chain, error) {
	filter := eventlog.EventsSubjects
	if room != "" {
		filter = eventlog.RoomEventsFilter(room)
	}
	chains := map[string]*events.Chain{}
	err := eventlog.ReadStored(ctx, js, eventlog.ReadOptions{Filter: filter}, func(s eventlog.StoredEvent) error {
		r := roomOfSubject(s.Subject)
		c, ok := chains[r]
		if !ok {
			c = &events.Chain{Room: r}
			chains[r] = c
		}
		if progress != nil {
			progress(s.Seq)
		}
		if err := c.AddFrom(s.Seq, s.Data, s.Source); err != nil && c.Break == nil {
			return err // not JSON: the log is unreadable, not merely broken
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	out := make([]*events.Chain, 0, len(chains))
	for _, r := range slices.Sorted(maps.Keys(chains)) {
		out = append(out, chains[r])
	}
	return out, nil
}

// roomOfSubject returns <room> of ev.<room>.<kind>.
func roomOfSubject(subject string) string {
	rest := strings.TrimPrefix(subject, "ev.")
	if i := strings.IndexByte(rest, '.'); i >= 0 {
		return rest[:i]
	}
	return rest
}
