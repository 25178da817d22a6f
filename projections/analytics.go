package projections

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/jetmedia/jetmedia/events"
)

// AnalyticsModelName is the analytics model's key prefix and consumer name.
const AnalyticsModelName = "analytics"

// RoomAnalytics is the fold state of one room's figures. Durations are summed when a session
// or track ends; the open ones are added up to the instant asked for by Figures.
type RoomAnalytics struct {
	Room    string `json:"room"`
	LastSeq uint64 `json:"last_seq"`
	// ParticipantMs is the summed duration of the ended peer sessions (publishers and viewers).
	ParticipantMs int64 `json:"participant_ms"`
	// PublishMs is the summed duration of the ended tracks, per kind (audio, video).
	PublishMs map[string]int64 `json:"publish_ms"`
	// Peak is the highest number of peers present at once, first reached at PeakAt.
	Peak   int       `json:"peak"`
	PeakAt time.Time `json:"peak_at"`
	// Hours counts joins and leaves per hour (key: the hour's start, RFC 3339 UTC).
	Hours map[string]HourCount `json:"hours"`
	// Live are the peers present now (peer → joined at) and LiveTracks the tracks published now.
	Live       map[string]time.Time `json:"live"`
	LiveTracks map[string]LiveTrack `json:"live_tracks"`
	LastEvent  time.Time            `json:"last_event"`
}

// HourCount is the joins and leaves of one hour.
type HourCount struct {
	Joins  int `json:"joins"`
	Leaves int `json:"leaves"`
}

// LiveTrack is a track being published.
type LiveTrack struct {
	Peer  string    `json:"peer"`
	Kind  string    `json:"kind"`
	Since time.Time `json:"since"`
}

// NewRoomAnalytics returns the figures of a room that has seen no events.
func NewRoomAnalytics(room string) RoomAnalytics {
	return RoomAnalytics{Room: room, PublishMs: map[string]int64{}, Hours: map[string]HourCount{},
		Live: map[string]time.Time{}, LiveTracks: map[string]LiveTrack{}}
}

func (a RoomAnalytics) clone() RoomAnalytics {
	c := a
	c.PublishMs = maps.Clone(a.PublishMs)
	c.Hours = maps.Clone(a.Hours)
	c.Live = maps.Clone(a.Live)
	c.LiveTracks = maps.Clone(a.LiveTracks)
	if c.PublishMs == nil {
		c.PublishMs = map[string]int64{}
	}
	if c.Hours == nil {
		c.Hours = map[string]HourCount{}
	}
	if c.Live == nil {
		c.Live = map[string]time.Time{}
	}
	if c.LiveTracks == nil {
		c.LiveTracks = map[string]LiveTrack{}
	}
	return c
}

func hourKey(t time.Time) string { return t.UTC().Truncate(time.Hour).Format(time.RFC3339) }

// span is the length of [from, to] in ms; a clock that went backwards counts nothing.
func span(from, to time.Time) int64 { return max(to.Sub(from).Milliseconds(), 0) }

// FoldAnalytics adds one event of the room to its figures. It never changes a; an event at or
// below a.LastSeq (when it has a sequence) is a redelivery and changes nothing.
func FoldAnalytics(a RoomAnalytics, e events.Envelope) (RoomAnalytics, error) {
	if e.Seq != 0 && e.Seq <= a.LastSeq {
		return a, nil
	}
	p, err := analyticsPayload(e)
	if err != nil {
		return a, err
	}
	n := a.clone()
	n.fold(e, p)
	return n, nil
}

// analyticsPayload is e's payload; nil for a type this code does not know.
func analyticsPayload(e events.Envelope) (events.Payload, error) {
	p, err := e.Payload()
	if err != nil {
		if errorsIsUnknown(err) {
			return nil, nil // a newer event type: nothing to count, but the checkpoint moves on
		}
		return nil, err
	}
	return p, nil
}

// fold adds e (with its payload p) to n in place; it cannot fail, so that callers check
// everything that can before they change n.
func (n *RoomAnalytics) fold(e events.Envelope, p events.Payload) {
	if e.Seq != 0 {
		n.LastSeq = e.Seq
	}
	n.LastEvent = e.Time
	switch p := p.(type) {
	case events.PeerJoined:
		h := n.Hours[hourKey(e.Time)]
		h.Joins++
		n.Hours[hourKey(e.Time)] = h
		if _, ok := n.Live[p.Peer]; !ok {
			n.Live[p.Peer] = e.Time
		}
		if len(n.Live) > n.Peak {
			n.Peak, n.PeakAt = len(n.Live), e.Time
		}
	case events.PeerLeft:
		h := n.Hours[hourKey(e.Time)]
		h.Leaves++
		n.Hours[hourKey(e.Time)] = h
		if since, ok := n.Live[p.Peer]; ok {
			n.ParticipantMs += span(since, e.Time)
			delete(n.Live, p.Peer)
		}
		// A session's tracks end with it, whether or not their unpublish was recorded.
		for _, id := range slices.Sorted(maps.Keys(n.LiveTracks)) {
			if t := n.LiveTracks[id]; t.Peer == p.Peer {
				n.PublishMs[t.Kind] += span(t.Since, e.Time)
				delete(n.LiveTracks, id)
			}
		}
	case events.TrackPublished:
		if _, ok := n.LiveTracks[p.Track]; !ok {
			n.LiveTracks[p.Track] = LiveTrack{Peer: p.Peer, Kind: p.Kind, Since: e.Time}
		}
	case events.TrackUnpublished:
		if t, ok := n.LiveTracks[p.Track]; ok {
			n.PublishMs[t.Kind] += span(t.Since, e.Time)
			delete(n.LiveTracks, p.Track)
		}
	}
}

// RoomFigures is the answer of GET /v1/analytics/rooms/{room}.
type RoomFigures struct {
	Room string `json:"room"`
	// At is the instant the open sessions and tracks are counted up to.
	At                 time.Time          `json:"at"`
	ParticipantMinutes float64            `json:"participant_minutes"`
	PublishMinutes     map[string]float64 `json:"publish_minutes"`
	PeakConcurrent     int                `json:"peak_concurrent_peers"`
	PeakAt             time.Time          `json:"peak_at,omitzero"`
	CurrentPeers       int                `json:"current_peers"`
	Hours              []HourFigures      `json:"hours"`
	LastSeq            uint64             `json:"last_seq"`
}

// HourFigures is one hour's joins and leaves.
type HourFigures struct {
	Hour   string `json:"hour"`
	Joins  int    `json:"joins"`
	Leaves int    `json:"leaves"`
}

// Figures returns a's figures with the sessions and tracks still open counted up to at.
func (a RoomAnalytics) Figures(at time.Time) RoomFigures {
	f := RoomFigures{Room: a.Room, At: at.UTC(), PublishMinutes: map[string]float64{}, PeakConcurrent: a.Peak,
		PeakAt: a.PeakAt, CurrentPeers: len(a.Live), Hours: []HourFigures{}, LastSeq: a.LastSeq}
	ms := a.ParticipantMs
	for _, since := range a.Live {
		ms += span(since, at)
	}
	f.ParticipantMinutes = minutes(ms)
	pub := maps.Clone(a.PublishMs)
	if pub == nil {
		pub = map[string]int64{}
	}
	for _, t := range a.LiveTracks {
		pub[t.Kind] += span(t.Since, at)
	}
	for k, v := range pub {
		f.PublishMinutes[k] = minutes(v)
	}
	for _, h := range slices.Sorted(maps.Keys(a.Hours)) {
		f.Hours = append(f.Hours, HourFigures{Hour: h, Joins: a.Hours[h].Joins, Leaves: a.Hours[h].Leaves})
	}
	return f
}

// minutes rounds to the millisecond's precision in minutes (3 decimals are enough for people).
func minutes(ms int64) float64 { return float64(ms/60) / 1000 }

// Analytics is the pebble model of the per-room figures: one key per room,
// analytics/d/<room>, holding its RoomAnalytics as JSON.
type Analytics struct{}

// Name implements Model.
func (Analytics) Name() string { return AnalyticsModelName }

func analyticsKey(room string) []byte { return append(DataPrefix(AnalyticsModelName), room...) }

// Apply implements Model.
func (Analytics) Apply(b *pebble.Batch, e events.Envelope) error {
	a, _, err := LoadAnalytics(b, e.Room)
	if err != nil {
		return err
	}
	next, err := FoldAnalytics(a, e)
	if err != nil {
		return err
	}
	v, err := json.Marshal(next)
	if err != nil {
		return err
	}
	return b.Set(analyticsKey(e.Room), v, nil)
}

// NewStage implements StagedModel: a batch folds each room's figures in memory and writes
// each room once.
func (Analytics) NewStage() Stage { return &analyticsStage{rooms: map[string]RoomAnalytics{}} }

type analyticsStage struct{ rooms map[string]RoomAnalytics }

// Apply folds in place (FoldAnalytics would clone the room's maps for every event): the stage
// owns its values (LoadAnalytics returns fresh maps), and nothing changes before the payload
// decoded.
func (s *analyticsStage) Apply(r pebble.Reader, e events.Envelope) error {
	a, ok := s.rooms[e.Room]
	if !ok {
		var err error
		if a, _, err = LoadAnalytics(r, e.Room); err != nil {
			return err
		}
	}
	if e.Seq != 0 && e.Seq <= a.LastSeq {
		return nil
	}
	p, err := analyticsPayload(e)
	if err != nil {
		return err
	}
	a.fold(e, p)
	s.rooms[e.Room] = a
	return nil
}

func (s *analyticsStage) Write(b *pebble.Batch) error {
	for room, a := range s.rooms {
		v, err := json.Marshal(a)
		if err != nil {
			return err
		}
		if err := b.Set(analyticsKey(room), v, nil); err != nil {
			return err
		}
	}
	return nil
}

// LoadAnalytics reads a room's figures; ok is false when the room has none.
func LoadAnalytics(r pebble.Reader, room string) (RoomAnalytics, bool, error) {
	v, ok, err := getKey(r, analyticsKey(room))
	if err != nil {
		return RoomAnalytics{}, false, fmt.Errorf("projections: analytics of %s: %w", room, err)
	}
	if !ok {
		return NewRoomAnalytics(room), false, nil
	}
	a := NewRoomAnalytics(room)
	if err := json.Unmarshal(v, &a); err != nil {
		return a, false, fmt.Errorf("projections: analytics of %s: %w", room, err)
	}
	return a.clone(), true, nil
}
