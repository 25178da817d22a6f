package forward

import (
	"encoding/binary"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jetmedia/jetmedia/pipeline/audiolevel"
)

// AudioConfig makes a hub choose which audio tracks it forwards, from the level reports of
// each room's publishers (lv.<room>, see rtc.Levels), and tell who speaks.
type AudioConfig struct {
	// MaxStreams is how many of a room's audio tracks the node forwards at most: the
	// speakers in rank, then those who spoke last (--max-audio-streams, default 3). 0
	// forwards every one.
	MaxStreams int
	// SubscribeLevels subscribes to a room's encoded level reports (mediabus's
	// SubscribeLevels behind a function); stop ends the subscription.
	SubscribeLevels func(room string, fn func(report []byte)) (stop func() error, err error)
	// OnSpeakers, if set, gets a room's ranked speakers each time they change (on the
	// goroutine delivering the level report; it must not block).
	OnSpeakers func(room string, speakers []audiolevel.Speaker)
	// Now is the clock (time.Now by default).
	Now func() time.Time
}

// Audio makes the hub's audio fan-outs (AttachAudio) follow cfg. Call it before the first
// Attach.
func (h *Hub) Audio(cfg AudioConfig) {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.audio = &audioSel{cfg: cfg, rooms: map[string]*audioRoom{}}
}

// audioSel is a hub's choice of audio tracks per room: one ranking per room per node, not
// per viewer (docs/audio.md says why).
type audioSel struct {
	cfg   AudioConfig
	mu    sync.Mutex // guards rooms and every audioRoom; never held while calling OnSpeakers
	rooms map[string]*audioRoom
}

type audioRoom struct {
	name     string
	rank     audiolevel.Ranker
	gates    map[string]*audioGate // the room's audio tracks with viewers on this node
	stop     func() error
	top      []string
	speakers []audiolevel.Speaker // as last told
}

// audioGate lets a track's packets into its fan-out while the track is among the room's
// chosen ones. Sequence numbers stay continuous across what it holds back, so viewers see
// a pause, not a loss (no NACKs, no concealment counted as loss).
type audioGate struct {
	f    *Fanout
	room *audioRoom
	open atomic.Bool
	// Written only by the track's delivery goroutine (one per subscription).
	held uint16 // packets held back so far (mod 2^16)
	buf  [maxPacket]byte
}

// Forward passes pkt on while the gate is open.
func (g *audioGate) Forward(pkt []byte) {
	if !g.open.Load() {
		g.held++
		return
	}
	if g.held == 0 || len(pkt) < MinHeader || len(pkt) > maxPacket {
		g.f.Forward(pkt)
		return
	}
	n := copy(g.buf[:], pkt)
	binary.BigEndian.PutUint16(g.buf[2:4], binary.BigEndian.Uint16(pkt[2:4])-g.held)
	g.f.Forward(g.buf[:n])
}

// add makes the gate of a room's audio track, subscribing to the room's levels with its
// first (h.mu held).
func (a *audioSel) add(room, track string, f *Fanout) (*audioGate, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	r, ok := a.rooms[room]
	if !ok {
		r = &audioRoom{name: room, gates: map[string]*audioGate{}}
		if a.cfg.SubscribeLevels != nil {
			stop, err := a.cfg.SubscribeLevels(room, func(b []byte) { a.report(r, b) })
			if err != nil {
				return nil, err
			}
			r.stop = stop
		}
		a.rooms[room] = r
	}
	g := &audioGate{f: f, room: r}
	r.gates[track] = g
	a.chooseLocked(r)
	return g, nil
}

// remove drops a track's gate, and the room's level subscription with its last (h.mu held).
func (a *audioSel) remove(room, track string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	r, ok := a.rooms[room]
	if !ok {
		return
	}
	delete(r.gates, track)
	if len(r.gates) > 0 {
		a.chooseLocked(r)
		return
	}
	delete(a.rooms, room)
	if r.stop != nil {
		_ = r.stop()
	}
}

// close drops every room.
func (a *audioSel) close() {
	a.mu.Lock()
	defer a.mu.Unlock()
	for k, r := range a.rooms {
		if r.stop != nil {
			_ = r.stop()
		}
		delete(a.rooms, k)
	}
}

// report takes one level report of room r.
func (a *audioSel) report(r *audioRoom, b []byte) {
	rep, err := audiolevel.ParseReport(b)
	if err != nil {
		return
	}
	a.mu.Lock()
	if a.rooms[r.name] != r { // unsubscribed meanwhile
		a.mu.Unlock()
		return
	}
	changed := r.rank.Set(rep.Track, rep.Level, rep.Speaking, a.cfg.Now())
	a.chooseLocked(r)
	var tell []audiolevel.Speaker
	if changed || r.speakers == nil {
		next := r.rank.Speakers(make([]audiolevel.Speaker, 0, 4))
		if !slices.Equal(next, r.speakers) || r.speakers == nil {
			r.speakers, tell = next, next
		}
	}
	on := a.cfg.OnSpeakers
	a.mu.Unlock()
	if tell != nil && on != nil {
		on(r.name, tell)
	}
}

// chooseLocked opens the gates of the chosen tracks and closes the others'. A track never
// reported (its publisher sends no levels: RTMP, or a client without the extension) cannot be
// judged and is always forwarded.
func (a *audioSel) chooseLocked(r *audioRoom) {
	n := a.cfg.MaxStreams
	if n <= 0 || r.rank.Len() <= n {
		for _, g := range r.gates {
			g.open.Store(true)
		}
		return
	}
	r.top = r.rank.Top(n, r.top[:0])
	for id, g := range r.gates {
		g.open.Store(slices.Contains(r.top, id) || !r.rank.Known(id))
	}
}

// AttachAudio is Attach for an audio track: with Audio configured, the track's packets reach
// its viewers on this node only while it is among its room's MaxStreams chosen tracks. These
// viewers share a fan-out of their own, apart from the track's Attach viewers.
func (h *Hub) AttachAudio(room, track string, o *Output) (*Fanout, func(), error) {
	return h.attach(room, track, SingleLayer, o, true)
}
