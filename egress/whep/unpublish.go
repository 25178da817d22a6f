package whep

import (
	"sync"
	"time"

	"github.com/jetmedia/jetmedia/pipeline/rtc"
)

// playing indexes the live viewers by room, so that the end of a track reaches the sessions
// that play it, and remembers the tracks that ended lately: a viewer whose catalog read named
// a track that ended before the viewer's session was indexed still hears of it.
type playing struct {
	mu     sync.Mutex
	byRoom map[string]map[*rtc.Session]*viewer
	ended  map[endedTrack]time.Time // when each track ended
}

// endedTrack names a track of a room.
type endedTrack struct{ room, track string }

// endedMemory is how long the end of a track is remembered for viewers that chose it just
// before: longer than a WHEP offer takes to answer.
const endedMemory = time.Minute

// add indexes the viewer's session and returns those of tracks that ended already.
func (p *playing) add(room string, s *rtc.Session, v *viewer, tracks []string) []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.byRoom == nil {
		p.byRoom = map[string]map[*rtc.Session]*viewer{}
	}
	if p.byRoom[room] == nil {
		p.byRoom[room] = map[*rtc.Session]*viewer{}
	}
	p.byRoom[room][s] = v
	return p.endedOfLocked(room, tracks)
}

// endedOf returns those of room's tracks that ended lately.
func (p *playing) endedOf(room string, tracks []string) []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.endedOfLocked(room, tracks)
}

func (p *playing) endedOfLocked(room string, tracks []string) []string {
	var gone []string
	for _, t := range tracks {
		if _, ok := p.ended[endedTrack{room, t}]; ok {
			gone = append(gone, t)
		}
	}
	return gone
}

func (p *playing) remove(room string, s *rtc.Session) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.byRoom[room], s)
	if len(p.byRoom[room]) == 0 {
		delete(p.byRoom, room)
	}
}

func (p *playing) in(room string) map[*rtc.Session]*viewer {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.inLocked(room)
}

func (p *playing) inLocked(room string) map[*rtc.Session]*viewer {
	out := make(map[*rtc.Session]*viewer, len(p.byRoom[room]))
	for s, v := range p.byRoom[room] {
		out[s] = v
	}
	return out
}

// end records that track ended at now (forgetting ends older than endedMemory) and returns
// the room's viewers to tell.
func (p *playing) end(room, track string, now time.Time) map[*rtc.Session]*viewer {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.forgetLocked(now)
	if p.ended == nil {
		p.ended = map[endedTrack]time.Time{}
	}
	p.ended[endedTrack{room, track}] = now
	return p.inLocked(room)
}

// forget drops the ends older than endedMemory. RunRecheck calls it every round, so that an
// idle node does not keep them until the next end: their keys are strings cut from the NATS
// messages that told of the ends, allocated among short-lived session objects, and would pin
// those objects' heap spans (issue 12).
func (p *playing) forget(now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.forgetLocked(now)
}

func (p *playing) forgetLocked(now time.Time) {
	for k, at := range p.ended {
		if now.Sub(at) > endedMemory {
			delete(p.ended, k)
		}
	}
	if len(p.ended) == 0 {
		p.ended = nil // a map never shrinks: drop the table a burst of ends grew
	}
}

// TrackEnded tells the viewers of room that track was unpublished (the wiring feeds it from
// the rooms bucket); a viewer left with none of its tracks ends (peer.left "unpublished"), so
// a dead publisher's viewers do not stay in the room, and in the log, receiving nothing.
func (h *Handler) TrackEnded(room, track string) {
	now := h.cfg.Sessions.Now()
	for s, v := range h.playing.end(room, track, now) {
		s.Step(func(rtc.Core) Output { return v.core.Unpublished(now, track) })
	}
}
