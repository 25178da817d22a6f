package projections_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/events"
	"github.com/jetmedia/jetmedia/projections"
)

var h0 = time.Date(2026, 11, 3, 13, 30, 0, 0, time.UTC)

// evAt is an event of room r stamped min minutes after h0, with actor who.
func evAt(t testing.TB, seq uint64, min float64, who string, p events.Payload) events.Envelope {
	t.Helper()
	e, err := events.New(events.Meta{Room: "r", Actor: who, Node: "n1",
		Time: h0.Add(time.Duration(min * float64(time.Minute)))}, p)
	require.NoError(t, err)
	e.Seq = seq
	return e
}

func join(peer string) events.PeerJoined {
	return events.PeerJoined{Peer: peer, Transport: "whip", Role: "publisher", Node: "n1"}
}

func left(peer string) events.PeerLeft { return events.PeerLeft{Peer: peer, Reason: "closed"} }

func pub(peer, track, kind string) events.TrackPublished {
	return events.TrackPublished{Peer: peer, Track: track, Kind: kind, Codec: "x/y", ClockRate: 90000, Layers: []string{"0"}}
}

func TestFoldAnalytics(t *testing.T) {
	tests := []struct {
		name   string
		events func(t testing.TB) []events.Envelope
		at     float64 // minutes after h0 the open sessions count up to
		want   projections.RoomFigures
	}{{
		name: "empty room",
		events: func(t testing.TB) []events.Envelope {
			return []events.Envelope{evAt(t, 1, 0, "", events.RoomCreated{Node: "n1"})}
		},
		want: projections.RoomFigures{PublishMinutes: map[string]float64{}, Hours: []projections.HourFigures{}, LastSeq: 1},
	}, {
		name: "one publisher, audio and video, leaves",
		events: func(t testing.TB) []events.Envelope {
			return []events.Envelope{
				evAt(t, 1, 0, "alice", join("p1")),
				evAt(t, 2, 1, "alice", pub("p1", "a", "audio")),
				evAt(t, 3, 1, "alice", pub("p1", "v", "video")),
				evAt(t, 4, 6, "alice", events.TrackUnpublished{Peer: "p1", Track: "v"}),
				evAt(t, 5, 10, "alice", left("p1")), // ends audio track "a" with the session
			}
		},
		at: 60,
		want: projections.RoomFigures{ParticipantMinutes: 10, PublishMinutes: map[string]float64{"audio": 9, "video": 5},
			PeakConcurrent: 1, PeakAt: h0, LastSeq: 5,
			Hours: []projections.HourFigures{{Hour: "2026-11-03T13:00:00Z", Joins: 1, Leaves: 1}}},
	}, {
		name: "open sessions count up to at; peak; hours",
		events: func(t testing.TB) []events.Envelope {
			return []events.Envelope{
				evAt(t, 1, 0, "a", join("p1")),
				evAt(t, 2, 20, "b", join("p2")),
				evAt(t, 3, 25, "c", join("p3")), // 3 at 13:55
				evAt(t, 4, 40, "a", left("p1")), // 14:10
				evAt(t, 5, 45, "d", join("p4")), // 3 again: the peak stays at its first time
				evAt(t, 6, 46, "b", pub("p2", "v", "video")),
			}
		},
		at: 50,
		// p1 40, p2 30, p3 25, p4 5 = 100; video 4.
		want: projections.RoomFigures{ParticipantMinutes: 100, PublishMinutes: map[string]float64{"video": 4},
			PeakConcurrent: 3, PeakAt: h0.Add(25 * time.Minute), CurrentPeers: 3, LastSeq: 6,
			Hours: []projections.HourFigures{
				{Hour: "2026-11-03T13:00:00Z", Joins: 3},
				{Hour: "2026-11-03T14:00:00Z", Joins: 1, Leaves: 1},
			}},
	}, {
		name: "redelivered events and duplicate joins count once",
		events: func(t testing.TB) []events.Envelope {
			j := evAt(t, 1, 0, "a", join("p1"))
			l := evAt(t, 3, 2, "a", left("p1"))
			return []events.Envelope{j, j, evAt(t, 2, 1, "a", join("p1")), l, l, evAt(t, 4, 3, "a", left("p1"))}
		},
		at: 10,
		want: projections.RoomFigures{ParticipantMinutes: 2, PublishMinutes: map[string]float64{}, PeakConcurrent: 1,
			PeakAt: h0, LastSeq: 4,
			Hours: []projections.HourFigures{{Hour: "2026-11-03T13:00:00Z", Joins: 2, Leaves: 2}}},
	}, {
		name: "leave of a peer never seen joining, clock going backwards",
		events: func(t testing.TB) []events.Envelope {
			return []events.Envelope{
				evAt(t, 1, 5, "a", left("ghost")),
				evAt(t, 2, 10, "a", join("p1")),
				evAt(t, 3, 9, "a", left("p1")),
			}
		},
		want: projections.RoomFigures{PublishMinutes: map[string]float64{}, PeakConcurrent: 1,
			PeakAt: h0.Add(10 * time.Minute), LastSeq: 3,
			Hours: []projections.HourFigures{{Hour: "2026-11-03T13:00:00Z", Joins: 1, Leaves: 2}}},
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := projections.NewRoomAnalytics("r")
			for _, e := range tc.events(t) {
				next, err := projections.FoldAnalytics(a, e)
				require.NoError(t, err)
				a = next
			}
			at := h0.Add(time.Duration(tc.at * float64(time.Minute)))
			tc.want.Room, tc.want.At = "r", at
			require.Equal(t, tc.want, a.Figures(at))
		})
	}
}

func TestFoldAnalyticsDoesNotChangeItsInput(t *testing.T) {
	a, err := projections.FoldAnalytics(projections.NewRoomAnalytics("r"), evAt(t, 1, 0, "a", join("p1")))
	require.NoError(t, err)
	before := a.Figures(h0.Add(time.Hour))
	_, err = projections.FoldAnalytics(a, evAt(t, 2, 1, "a", left("p1")))
	require.NoError(t, err)
	require.Equal(t, before, a.Figures(h0.Add(time.Hour)))
}
