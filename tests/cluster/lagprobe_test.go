package cluster

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetmedia/jetmedia/pipeline/eventlog"
	"github.com/jetmedia/jetmedia/projections"
)

// lagProbe measures how late the rooms bucket shows one room's events: every 100 ms it reads
// the room's newest sequence in the log, then the room's record in the bucket (through one
// node), and notes when the bucket first held each sequence it read from the log. A kill test
// reads from it how long the bucket lagged the log after the kill (issue 13: with every node's
// projection writing the one bucket, tens of seconds after a stream leader's death).
type lagProbe struct {
	stop context.CancelFunc
	done chan struct{}

	mu      sync.Mutex
	samples []lagSample
}

// lagSample is one read of the log: the room's newest sequence at, and when the bucket first
// showed it (zero: not yet).
type lagSample struct {
	at, caught time.Time
	seq        uint64
}

func startLagProbe(t *testing.T, js jetstream.JetStream, rooms jetstream.KeyValue, room string) *lagProbe {
	ctx, stop := context.WithCancel(context.Background())
	p := &lagProbe{stop: stop, done: make(chan struct{})}
	go func() {
		defer close(p.done)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			p.poll(ctx, js, rooms, room)
		}
	}()
	t.Cleanup(p.close)
	return p
}

func (p *lagProbe) close() {
	p.stop()
	<-p.done
}

func (p *lagProbe) poll(ctx context.Context, js jetstream.JetStream, rooms jetstream.KeyValue, room string) {
	rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	at := time.Now()
	var logSeq uint64
	if s, err := js.Stream(rctx, eventlog.StreamEvents); err == nil {
		if m, err := s.GetLastMsgForSubject(rctx, eventlog.RoomEventsFilter(room)); err == nil {
			logSeq = m.Sequence
		}
	}
	// One direct get of the room's record (its last_seq), not a watch of every key: the probe
	// reads ten times a second and must not load the servers it measures.
	var r projections.Room
	e, err := rooms.Get(rctx, projections.RoomKey(room))
	if err == nil {
		err = json.Unmarshal(e.Value(), &r)
	}
	now := time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	if err != nil {
		return // no reading of the bucket to set it against (also when the probe stops)
	}
	if logSeq > 0 {
		p.samples = append(p.samples, lagSample{at: at, seq: logSeq})
	}
	for i := range p.samples {
		if s := &p.samples[i]; s.caught.IsZero() && s.seq <= r.LastSeq {
			s.caught = now
		}
	}
}

// lagFigures are what a probe measured after an instant (a kill).
type lagFigures struct {
	// before is the longest a sequence read from the log waited for the bucket, of those the
	// bucket showed before the instant; worst the same of the others (read after the instant,
	// or still missing at it).
	before, worst time.Duration
	// settled is when, after the instant, the bucket last showed a sequence more than a
	// second late: from then on it kept within a second of the log.
	settled time.Duration
	// behind: a sequence read from the log was still missing from the bucket at the end.
	behind bool
}

// around reports the figures of the samples around the instant at.
func (p *lagProbe) around(at time.Time) lagFigures {
	p.mu.Lock()
	defer p.mu.Unlock()
	var f lagFigures
	now := time.Now()
	for _, s := range p.samples {
		caught := s.caught
		if caught.IsZero() {
			caught, f.behind = now, true
		}
		d := caught.Sub(s.at)
		if caught.Before(at) {
			f.before = max(f.before, d)
			continue
		}
		f.worst = max(f.worst, d)
		if d > time.Second {
			f.settled = max(f.settled, caught.Sub(at))
		}
	}
	return f
}
