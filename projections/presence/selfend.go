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
// longer than the TTL while the others' do not (overloaded, partitioned, paused) is taken for
// lost, and a survivor writes its sessions' ends (End), while it may still serve them.
//
// It looks only while the node may have been taken for lost: Presence tells it (Suspect) when
// a renewal of the lease came, or is still missing, later than a survivor can wait (the TTL
// less one renewal period after the start of the last renewal that was stored), and it looks
// until a while after the last such renewal. A node whose lease is renewed on time cannot be
// taken for lost (a survivor ages a lease from when it saw it written), and reads nothing:
// the check costs nothing on a healthy node, or on the links to wherever the bucket lives.
//
// While it looks, a round (every renewal period) reads the rooms whose record the bucket
// wrote since the last round (Written, fed by the node's watch of the rooms' records; a
// survivor's ends are such a write), and at the first round of a window every room with a
// local session, whatever was written: the record once and the local sessions' peer keys,
// never per packet; it ends there at once the sessions EndedInLog names, with one warning
// each. A room that cannot be read, or whose record read is older than the write that named
// it (a replica that lags), is read again next round.
type SelfEnd struct {
	Rooms    jetstream.KeyValue
	Sessions LocalSessions
	Logger   *slog.Logger

	mu      sync.Mutex
	until   time.Time         // look until then (Suspect)
	all     bool              // the next round reads every room with a local session
	written map[string]uint64 // rooms whose record was written since the last round → latest bucket sequence
}

// Suspect tells that this node may have been taken for lost: look until `until` (a later
// call extends the window; the first of a window has the next round read every room with a
// local session). It does not block.
func (s *SelfEnd) Suspect(now, until time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !now.Before(s.until) {
		s.all = true // a new window: what was written before it was not kept
	}
	if until.After(s.until) {
		s.until = until
	}
}

// Written notes a write of room's record in the rooms bucket at bucket sequence seq
// (projections.RunRoomRecords): the next round reads the room if this node has sessions in
// it and is looking. It does not block.
func (s *SelfEnd) Written(room string, seq uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !time.Now().Before(s.until) {
		return // not looking: nothing is kept
	}
	if s.written == nil {
		s.written = map[string]uint64{}
	}
	s.written[room] = max(s.written[room], seq)
}

// Run runs a round every `every` while the node looks (Suspect), until ctx ends.
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
		rooms, all, looking := s.written, s.all, time.Now().Before(s.until)
		s.written, s.all = nil, false
		s.mu.Unlock()
		if !all && (!looking || len(rooms) == 0) {
			continue
		}
		if all {
			rooms = nil // every room with a local session
		}
		cctx, cancel := context.WithTimeout(ctx, every)
		_, unread := s.check(cctx, rooms)
		cancel()
		s.mu.Lock()
		for room, seq := range unread { // read again next round
			if s.written == nil {
				s.written = map[string]uint64{}
			}
			s.written[room] = max(s.written[room], seq)
		}
		s.mu.Unlock()
	}
}

// Check runs one round over every room with a local session and returns how many sessions
// it ended.
func (s *SelfEnd) Check(ctx context.Context) int {
	n, _ := s.check(ctx, nil)
	return n
}

// check runs one round over the rooms with a local session that are in only (nil: all; a
// room's value is the bucket sequence a read of its record must reach) and returns how many
// sessions it ended and the rooms it could not read (or read only from before that sequence).
func (s *SelfEnd) check(ctx context.Context, only map[string]uint64) (int, map[string]uint64) {
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
	unread := map[string]uint64{}
	for _, room := range slices.Sorted(maps.Keys(byRoom)) {
		r, rev, err := s.readPeers(ctx, room, byRoom[room])
		if err == nil && rev < only[room] {
			err = fmt.Errorf("presence: room %s: read its record at bucket sequence %d, written at %d (a lagging replica)", room, rev, only[room])
		}
		if err != nil {
			unread[room] = only[room]
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
func (s *SelfEnd) readPeers(ctx context.Context, room string, sessions []LocalSession) (projections.Room, uint64, error) {
	r := projections.NewRoom(room)
	e, err := s.Rooms.Get(ctx, projections.RoomKey(room))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return r, 0, nil // no record: the room has not been folded; nobody ends
	}
	if err != nil {
		return r, 0, fmt.Errorf("presence: room %s: %w", room, err)
	}
	rev := e.Revision()
	if err := projections.ApplyEntry(&r, e.Key(), e.Value()); err != nil {
		return r, rev, err
	}
	for _, l := range sessions {
		e, err := s.Rooms.Get(ctx, projections.PeerKey(room, l.ID))
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return r, rev, fmt.Errorf("presence: room %s, peer %s: %w", room, l.ID, err)
		}
		if err := projections.ApplyEntry(&r, e.Key(), e.Value()); err != nil {
			return r, rev, err
		}
	}
	return r, rev, nil
}
