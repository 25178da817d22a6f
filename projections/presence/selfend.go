package presence

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
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
//
// A round reads only the rooms whose record the bucket wrote since the last round (Written,
// fed by the node's watch of the rooms' records): a survivor's ends are such a write, and a
// room nothing happens in costs nothing, on this node or on the links to wherever the bucket
// lives. A room written to often is still read at most once a round.
type SelfEnd struct {
	Rooms    jetstream.KeyValue
	Sessions LocalSessions
	Logger   *slog.Logger

	mu      sync.Mutex
	written map[string]struct{} // rooms whose record was written since the last round
}

// Written notes a write of room's record in the rooms bucket (projections.RunRoomRecords):
// the next round reads the room if this node has sessions in it. It does not block.
func (s *SelfEnd) Written(room string, _ uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.written == nil {
		s.written = map[string]struct{}{}
	}
	s.written[room] = struct{}{}
}

// Run checks, every `every` until ctx ends, the rooms written since the last round.
func (s *SelfEnd) Run(ctx context.Context, every time.Duration) {
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		s.mu.Lock()
		rooms := s.written
		s.written = nil
		s.mu.Unlock()
		if len(rooms) == 0 {
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, every)
		_, unread := s.check(cctx, rooms)
		cancel()
		for _, room := range unread { // read again next round
			s.Written(room, 0)
		}
	}
}

// Check runs one round over every room with a local session and returns how many sessions
// it ended.
func (s *SelfEnd) Check(ctx context.Context) int {
	n, _ := s.check(ctx, nil)
	return n
}

// check runs one round over the rooms with a local session that are in only (nil: all) and
// returns how many sessions it ended and the rooms it could not read.
func (s *SelfEnd) check(ctx context.Context, only map[string]struct{}) (int, []string) {
	log := s.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	byRoom := map[string][]LocalSession{}
	for _, l := range s.Sessions.Joined() {
		if only != nil {
			if _, ok := only[l.Room]; !ok {
				continue
			}
		}
		byRoom[l.Room] = append(byRoom[l.Room], l)
	}
	n := 0
	var unread []string
	for _, room := range slices.Sorted(maps.Keys(byRoom)) {
		r, err := s.readPeers(ctx, room, byRoom[room])
		if err != nil {
			unread = append(unread, room)
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
	return n, unread
}

// readPeers reads of room what EndedInLog needs of it: the room's record (how far the bucket
// has folded the room's log; the projection writes it after the peers' keys for every event)
// and the keys of the local sessions' peers, a key read each (direct gets where the bucket
// allows them), not the whole room: a round costs one read more than the room's local
// sessions, whatever the room's size.
func (s *SelfEnd) readPeers(ctx context.Context, room string, sessions []LocalSession) (projections.Room, error) {
	r := projections.NewRoom(room)
	e, err := s.Rooms.Get(ctx, projections.RoomKey(room))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return r, nil // no record: the room has not been folded (or has ended); nobody ends
	}
	if err != nil {
		return r, fmt.Errorf("presence: room %s: %w", room, err)
	}
	if err := projections.ApplyEntry(&r, e.Key(), e.Value()); err != nil {
		return r, err
	}
	for _, l := range sessions {
		e, err := s.Rooms.Get(ctx, projections.PeerKey(room, l.ID))
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return r, fmt.Errorf("presence: room %s, peer %s: %w", room, l.ID, err)
		}
		if err := projections.ApplyEntry(&r, e.Key(), e.Value()); err != nil {
			return r, err
		}
	}
	return r, nil
}
