package audiolevel

import (
	"cmp"
	"slices"
	"time"
)

// Speaker is a track that is speaking, with its smoothed level (-dBov).
type Speaker struct {
	Track string `json:"track"`
	Level uint8  `json:"level"`
}

// Ranker ranks the audio tracks of one room from their level reports: the tracks speaking,
// loudest first, and beyond them the ones that spoke most recently. A track passes the one
// above it only when it is louder by Margin dB, so two voices of about the same level keep
// their order instead of swapping with every report. It is sans-IO and not safe for
// concurrent use; its owner serialises the calls.
type Ranker struct {
	// Margin is how much louder (dB) a speaker must be to pass the one ranked above it (6).
	Margin uint8
	// Expire forgets a track with no report for this long (3 s: three idle reports missed).
	Expire time.Duration

	tracks map[string]*ranked
	order  []string // speaking tracks, ranked
	seq    uint64
}

type ranked struct {
	level    uint8
	speaking bool
	seen     time.Time
	spoke    time.Time // when it last stopped speaking (zero: never spoke)
	first    uint64    // order of first report, for tracks that never spoke
}

// Set records a track's report at now: its level and whether its publisher's meter says it is
// speaking. It reports whether the ranked speakers changed.
func (r *Ranker) Set(track string, level uint8, speaking bool, now time.Time) bool {
	if r.tracks == nil {
		r.tracks = map[string]*ranked{}
	}
	t, ok := r.tracks[track]
	if !ok {
		r.seq++
		t = &ranked{first: r.seq}
		r.tracks[track] = t
	}
	if t.speaking && !speaking {
		t.spoke = now
	}
	t.level, t.speaking, t.seen = min(level, Silence), speaking, now
	return r.rank(now)
}

// Forget drops a track (unpublished, or no longer forwarded) and reports whether the ranked
// speakers changed.
func (r *Ranker) Forget(track string, now time.Time) bool {
	delete(r.tracks, track)
	return r.rank(now)
}

// Prune forgets the tracks whose reports stopped and reports whether the speakers changed.
func (r *Ranker) Prune(now time.Time) bool { return r.rank(now) }

// Len is the number of tracks known.
func (r *Ranker) Len() int { return len(r.tracks) }

func (r *Ranker) margin() uint8 {
	if r.Margin == 0 {
		return 6
	}
	return r.Margin
}

func (r *Ranker) expire() time.Duration {
	if r.Expire <= 0 {
		return 3 * time.Second
	}
	return r.Expire
}

// rank recomputes the order of the speakers and reports whether it changed.
func (r *Ranker) rank(now time.Time) bool {
	for id, t := range r.tracks {
		if now.Sub(t.seen) > r.expire() {
			delete(r.tracks, id)
		}
	}
	old := len(r.order)
	next := make([]string, 0, len(r.tracks))
	for _, id := range r.order { // keep the standing order
		if t, ok := r.tracks[id]; ok && t.speaking {
			next = append(next, id)
		}
	}
	kept := len(next)
	for id, t := range r.tracks { // newcomers after, loudest first
		if t.speaking && !slices.Contains(next[:kept], id) {
			next = append(next, id)
		}
	}
	slices.SortStableFunc(next[kept:], func(a, b string) int { return int(r.tracks[a].level) - int(r.tracks[b].level) })
	// Louder by the margin passes: insertion by one step at a time keeps the order stable.
	m := int(r.margin())
	for i := 1; i < len(next); i++ {
		for j := i; j > 0 && int(r.tracks[next[j]].level)+m <= int(r.tracks[next[j-1]].level); j-- {
			next[j], next[j-1] = next[j-1], next[j]
		}
	}
	changed := old != len(next) || !slices.Equal(r.order, next)
	r.order = next
	return changed
}

// Speakers appends the speaking tracks, ranked, to dst.
func (r *Ranker) Speakers(dst []Speaker) []Speaker {
	for _, id := range r.order {
		dst = append(dst, Speaker{Track: id, Level: r.tracks[id].level})
	}
	return dst
}

// Top appends to dst the n tracks a node should forward: the speakers in rank, then the
// tracks that stopped speaking most recently, then those that never spoke in the order they
// were first reported.
func (r *Ranker) Top(n int, dst []string) []string {
	start := len(dst)
	for _, id := range r.order {
		if len(dst)-start == n {
			return dst
		}
		dst = append(dst, id)
	}
	rest := make([]string, 0, len(r.tracks))
	for id, t := range r.tracks {
		if !t.speaking {
			rest = append(rest, id)
		}
	}
	slices.SortFunc(rest, func(a, b string) int {
		ta, tb := r.tracks[a], r.tracks[b]
		if c := tb.spoke.Compare(ta.spoke); c != 0 {
			return c // most recent first; never (zero) last
		}
		return cmp.Compare(ta.first, tb.first)
	})
	for _, id := range rest {
		if len(dst)-start == n {
			break
		}
		dst = append(dst, id)
	}
	return dst
}

// Known reports whether the track has a report that has not expired.
func (r *Ranker) Known(track string) bool {
	_, ok := r.tracks[track]
	return ok
}
