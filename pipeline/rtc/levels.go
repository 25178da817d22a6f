package rtc

import (
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/jetmedia/jetmedia/events"
	"github.com/jetmedia/jetmedia/pipeline/audiolevel"
)

// SpeakerChanged is the speaker.changed event of one of the session's audio tracks, measured
// by its Meter; nothing once the session is closed.
func (l *Lifecycle) SpeakerChanged(track string, speaking bool, level uint8) Output {
	if l.Closed() {
		return Output{}
	}
	return Output{Events: []events.Payload{events.SpeakerChanged{Peer: l.peer.ID, Track: track, Speaking: speaking, Level: level}}}
}

// speakerCore is a core that records speaker changes: every core embedding Lifecycle.
type speakerCore interface {
	SpeakerChanged(track string, speaking bool, level uint8) Output
}

// AudioLevelID is the id a receiver negotiated for the audio-level header extension, 0 if
// none (the publisher sends no levels).
func AudioLevelID(p webrtc.RTPParameters) uint8 {
	for _, h := range p.HeaderExtensions {
		if h.URI == audiolevel.URI && h.ID > 0 && h.ID < 256 {
			return uint8(h.ID)
		}
	}
	return 0
}

// LevelReporter sends a track's encoded level report (audiolevel.Report) toward the room's
// nodes; *mediabus.MediaBus is one.
type LevelReporter interface {
	PublishLevel(room string, report []byte) error
}

// Levels reads the audio level of the tracks a node's publishers send (WHIP and rooms alike):
// each track's Meter decides when it starts and stops speaking, which its session records as
// speaker.changed, and its level reports go to Reporter for the rooms' rankings.
type Levels struct {
	Config   audiolevel.Config
	Reporter LevelReporter // nil: no reports
	Now      func() time.Time
}

// Tap returns the RTPSender a published track's read loop sends to: next, after the level of
// each packet is read. Without a negotiated extension (id 0) it is next itself.
func (l *Levels) Tap(s *Session, track string, id uint8, next RTPSender) RTPSender {
	if l == nil || id == 0 {
		return next
	}
	now := l.Now
	if now == nil {
		now = time.Now
	}
	return &levelTap{next: next, id: id, meter: audiolevel.NewMeter(l.Config), now: now, s: s, track: track, rep: l.Reporter}
}

// levelTap runs on one track's read loop goroutine: its meter needs no lock.
type levelTap struct {
	next  RTPSender
	id    uint8
	meter *audiolevel.Meter
	now   func() time.Time
	s     *Session
	track string
	rep   LevelReporter
	buf   []byte // the encoded report, reused
}

// Send reads pkt's level, records a change of speaking and sends a level report when one is
// due, then hands pkt on. It allocates nothing but on a change or a report (ten a second at
// most).
func (t *levelTap) Send(pkt []byte) error {
	if level, _, ok := audiolevel.Parse(pkt, t.id); ok {
		now := t.now()
		if t.meter.Observe(level, now) {
			speaking, lv, track := t.meter.Speaking(), t.meter.Level(), t.track
			t.s.Step(func(c Core) Output {
				if sc, ok := c.(speakerCore); ok {
					return sc.SpeakerChanged(track, speaking, lv)
				}
				return Output{}
			})
		}
		if t.rep != nil && t.meter.Due(now) {
			r := audiolevel.Report{Track: t.track, Level: t.meter.Level(), Speaking: t.meter.Speaking()}
			var err error
			if t.buf, err = r.AppendBinary(t.buf[:0]); err == nil {
				err = t.rep.PublishLevel(t.s.Room, t.buf)
			}
			if err != nil {
				t.s.Log.Debug("level report not sent", "track", t.track, "err", err)
			}
		}
	}
	return t.next.Send(pkt)
}
