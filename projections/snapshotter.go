package projections

import (
	"context"
	"log/slog"
	"maps"
	"slices"
	"sync"
)

// Snapshotter writes room snapshots in the background as the rooms projection folds: a room
// whose runner folded `every` events since its last snapshot (counted by this process) gets
// its snapshots written from its latest one to the log's head (SnapshotStore.WriteSnapshots).
// The runner only counts (Folded, no I/O); Run does the reading and writing on its own
// goroutine, off the projection's path.
type Snapshotter struct {
	store *SnapshotStore
	every int
	log   *slog.Logger

	mu     sync.Mutex
	counts map[string]int  // events folded since the room's last snapshot here
	due    map[string]bool // rooms to snapshot
	wake   chan struct{}   // one pending wake-up of Run
}

// NewSnapshotter returns a snapshotter writing into store every `every` events of a room
// (0: SnapshotEvery).
func NewSnapshotter(store *SnapshotStore, every int, log *slog.Logger) *Snapshotter {
	if every <= 0 {
		every = SnapshotEvery
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Snapshotter{store: store, every: every, log: log.With("component", "snapshots"),
		counts: map[string]int{}, due: map[string]bool{}, wake: make(chan struct{}, 1)}
}

// Folded counts n events of room folded into the projection; it never blocks.
func (s *Snapshotter) Folded(room string, n int) {
	s.mu.Lock()
	s.counts[room] += n
	ready := s.counts[room] >= s.every
	if ready {
		delete(s.counts, room)
		s.due[room] = true
	}
	s.mu.Unlock()
	if ready {
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
}

// Run writes the snapshots of the rooms that are due until ctx ends. A room whose snapshot
// fails is logged and tried again when it is due next.
func (s *Snapshotter) Run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.wake:
		}
		s.mu.Lock()
		rooms := slices.Sorted(maps.Keys(s.due))
		clear(s.due)
		s.mu.Unlock()
		for _, room := range rooms {
			n, err := s.store.WriteSnapshots(ctx, room, s.every, false)
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				s.log.Warn("writing room snapshots", "room", room, "err", err)
				continue
			}
			s.log.Debug("room snapshots written", "room", room, "snapshots", n)
		}
	}
}
