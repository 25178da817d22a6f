package whep

import (
	"sync"

	"github.com/jetmedia/jetmedia/pipeline/rtc"
)

// playing indexes the live viewers by room, so that the end of a track reaches the sessions
// that play it.
type playing struct {
	mu     sync.Mutex
	byRoom map[string]map[*rtc.Session]*viewer
}

func (p *playing) add(room string, s *rtc.Session, v *viewer) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.byRoom == nil {
		p.byRoom = map[string]map[*rtc.Session]*viewer{}
	}
	if p.byRoom[room] == nil {
		p.byRoom[room] = map[*rtc.Session]*viewer{}
	}
	p.byRoom[room][s] = v
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
	out := make(map[*rtc.Session]*viewer, len(p.byRoom[room]))
	for s, v := range p.byRoom[room] {
		out[s] = v
	}
	return out
}

// TrackEnded tells the viewers of room that track was unpublished (the wiring feeds it from
// the rooms bucket); a viewer left with none of its tracks ends (peer.left "unpublished"), so
// a dead publisher's viewers do not stay in the room, and in the log, receiving nothing.
func (h *Handler) TrackEnded(room, track string) {
	now := h.cfg.Sessions.Now()
	for s, v := range h.playing.in(room) {
		s.Step(func(rtc.Core) Output { return v.core.Unpublished(now, track) })
	}
}
