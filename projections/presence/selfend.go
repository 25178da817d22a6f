package presence

import (
	"context"
	"log/slog"
	"maps"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetmedia/jetmedia/projections"
)

// LocalSession is a live session of this node whose peer.joined the log holds.
type LocalSession struct {
	// ID is the session's peer.
	ID, Room, Transport string
	// JoinSeq is a log sequence at or past the session's peer.joined.
	JoinSeq uint64
}

// LocalSessions are this node's live sessions (rtc.Registry, through the wiring).
type LocalSessions interface {
	// Joined lists the live sessions whose join the log holds.
	Joined() []LocalSession
	// EndedInLog ends session id without recording anything (the log has its end); false if
	// it had ended or was ending already.
	EndedInLog(id string) bool
}

// EndedInLog returns those of sessions (of room r) that r, read from the rooms bucket, shows
// ended by the log: r has folded the room's log past the session's join, and the peer is not
// in it. A bucket that has not folded the join yet ends nobody: it lags, it has not seen the
// peer come, so its absence says nothing.
func EndedInLog(r projections.Room, sessions []LocalSession) []LocalSession {
	var out []LocalSession
	for _, s := range sessions {
		if s.Room != r.Room || s.JoinSeq == 0 || r.LastSeq < s.JoinSeq {
			continue
		}
		if _, ok := r.Peers[s.ID]; !ok {
			out = append(out, s)
		}
	}
	return out
}

// SelfEnd ends this node's sessions that the log has ended: a node whose lease renewals stall
// longer than the TTL while the others' do not (overloaded, partitioned) is taken for lost,
// and a survivor writes its sessions' ends (End), while it may still serve them. Each round
// reads, for every room with a local session, the room once from the rooms bucket (never per
// packet, never per session) and ends there at once the sessions EndedInLog names, with one
// warning each. A room that cannot be read is tried again next round.
type SelfEnd struct {
	Rooms    jetstream.KeyValue
	Sessions LocalSessions
	Logger   *slog.Logger
}

// Run checks every `every` until ctx ends.
func (s *SelfEnd) Run(ctx context.Context, every time.Duration) {
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		cctx, cancel := context.WithTimeout(ctx, every)
		s.Check(cctx)
		cancel()
	}
}

// Check runs one round and returns how many sessions it ended.
func (s *SelfEnd) Check(ctx context.Context) int {
	log := s.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	byRoom := map[string][]LocalSession{}
	for _, l := range s.Sessions.Joined() {
		byRoom[l.Room] = append(byRoom[l.Room], l)
	}
	n := 0
	for _, room := range slices.Sorted(maps.Keys(byRoom)) {
		r, err := projections.LoadRoom(ctx, s.Rooms, room)
		if err != nil {
			if ctx.Err() != nil {
				return n
			}
			log.Debug("presence: room not read for this node's sessions", "room", room, "err", err)
			continue
		}
		for _, l := range EndedInLog(r, byRoom[room]) {
			if s.Sessions.EndedInLog(l.ID) {
				n++
				log.Warn("presence: the log ended this session (its node was taken for lost while it served it); ended here too, nothing recorded",
					"room", room, "peer", l.ID, "transport", l.Transport, "room_seq", r.LastSeq, "join_seq", l.JoinSeq)
			}
		}
	}
	return n
}
