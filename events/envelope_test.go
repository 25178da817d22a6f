package events_test

import (
	"encoding/json"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/events"
)

// samples holds one populated payload of every registered type; TestSamplesCoverRegistry keeps
// it complete when a type is added.
var samples = []events.Payload{
	events.RoomCreated{Node: "n1"},
	events.PeerJoined{Peer: "p1", Transport: events.TransportWHIP, Role: "publisher", Node: "n1", RemoteAddr: "10.0.0.1:5000", UserAgent: "obs/30"},
	events.NewPeerLeft("p1", "closed"),
	events.PeerLeftV1{Peer: "p1", Reason: "kicked"}, // written by older nodes; decodes upcast
	events.TrackPublished{Peer: "p1", Track: "t1", Kind: "video", Codec: "video/VP8", ClockRate: 90000, Channels: 0, FmtpLine: "x=1", Layers: []string{"0", "1"}},
	events.TrackUnpublished{Peer: "p1", Track: "t1"},
	events.SubscriptionStarted{Peer: "v1", Track: "t1", Publisher: "p1"},
	events.SubscriptionEnded{Peer: "v1", Track: "t1"},
	events.PeerUpdated{Peer: "p1", Metadata: `{"hand":"up"}`},
	events.TrackUpdated{Peer: "p1", Track: "t1", Muted: true},
	events.SpeakerChanged{Peer: "p1", Track: "t1", Speaking: true, Level: 31},
	events.DTMFReceived{Peer: "p1", Digit: "5", DurationMS: 160},
}

func TestSamplesCoverRegistry(t *testing.T) {
	var got []string
	for _, p := range samples {
		got = append(got, p.EventType())
	}
	want := events.Types()
	slices.Sort(got)
	slices.Sort(want)
	require.Equal(t, want, got)
}

func TestRoundTrip(t *testing.T) {
	at := time.Date(2026, 11, 3, 10, 4, 5, 123456789, time.FixedZone("CET", 3600))
	for _, p := range samples {
		t.Run(p.EventType(), func(t *testing.T) {
			meta := events.Meta{Room: "room-1", Actor: "p1", Node: "n1", CausationID: "c1", Time: at}
			e, err := events.New(meta, p)
			require.NoError(t, err)
			require.Equal(t, events.SpecVersion, e.SpecVersion)
			require.Equal(t, p.EventType(), e.Type)
			require.Equal(t, "jetmedia/n1", e.Source)
			require.Equal(t, "room-1", e.Subject)
			require.Equal(t, "room-1", e.Room)
			require.Equal(t, "p1", e.Actor)
			require.Equal(t, "c1", e.CausationID)
			require.Equal(t, time.UTC, e.Time.Location())
			require.True(t, e.Time.Equal(at.Truncate(time.Microsecond)))

			b, err := events.Encode(e)
			require.NoError(t, err)
			d, err := events.Decode(b)
			require.NoError(t, err)
			require.Equal(t, e, d, "envelope survives encode/decode exactly")

			got, err := d.Payload()
			require.NoError(t, err)
			want := p
			if v1, ok := p.(events.PeerLeftV1); ok {
				want = v1.Upcast()
			}
			require.Equal(t, want, got)
		})
	}
}

func TestNewDefaultsAndErrors(t *testing.T) {
	e, err := events.New(events.Meta{Room: "r"}, events.PeerLeft{Peer: "p"})
	require.NoError(t, err)
	require.Equal(t, "system", e.Actor)
	require.Empty(t, e.CausationID)

	b, err := events.Encode(e)
	require.NoError(t, err)
	require.NotContains(t, string(b), "causationid", "empty causation is omitted")
	require.NotContains(t, string(b), "Seq", "Seq is not on the wire")

	_, err = events.New(events.Meta{Room: "bad room"}, events.PeerLeft{})
	require.ErrorIs(t, err, events.ErrInvalid)

	_, err = events.New(events.Meta{Room: "r"}, unregistered{})
	require.ErrorIs(t, err, events.ErrUnknownType)
}

type unregistered struct{}

func (unregistered) EventType() string { return "nope.v1" }

func TestValidID(t *testing.T) {
	tests := []struct {
		id   string
		want bool
	}{
		{"a", true},
		{"room-1", true},
		{"Room_2", true},
		{strings.Repeat("x", 64), true},
		{strings.Repeat("x", 65), false},
		{"", false},
		{"a.b", false},
		{"a b", false},
		{"a*", false},
		{"a>", false},
		{"é", false},
		{"a\n", false},
		{"../x", false},
	}
	for _, tt := range tests {
		require.Equal(t, tt.want, events.ValidID(tt.id), "ValidID(%q)", tt.id)
	}
}

func TestNewID(t *testing.T) {
	format := regexp.MustCompile(`^[0-9a-hjkmnp-tv-z]{26}$`)
	seen := make(map[string]bool, 10000)
	for range 10000 {
		id := events.NewID()
		require.Regexp(t, format, id)
		require.True(t, events.ValidID(id))
		require.False(t, seen[id], "duplicate id %s", id)
		seen[id] = true
	}
}

func TestKind(t *testing.T) {
	tests := map[string]string{
		events.TypePeerJoined:          "peer_joined",
		events.TypeSubscriptionStarted: "subscription_started",
		events.TypeRoomCreated:         "room_created",
		"a.b.c.v2":                     "a_b_c",
		"plain":                        "plain",
		"":                             "",
	}
	for in, want := range tests {
		require.Equal(t, want, events.Kind(in), "Kind(%q)", in)
	}
}

func TestDecodeRejects(t *testing.T) {
	valid := map[string]any{"id": "x", "type": events.TypePeerLeft, "room": "r", "data": map[string]any{}}
	with := func(k string, v any) []byte {
		m := map[string]any{}
		for kk, vv := range valid {
			m[kk] = vv
		}
		if v == nil {
			delete(m, k)
		} else {
			m[k] = v
		}
		b, err := json.Marshal(m)
		require.NoError(t, err)
		return b
	}
	tests := []struct {
		name string
		in   []byte
	}{
		{"not json", []byte("{")},
		{"array", []byte("[]")},
		{"missing id", with("id", nil)},
		{"missing type", with("type", nil)},
		{"missing room", with("room", nil)},
		{"bad room", with("room", "a.b")},
		{"id wrong type", with("id", 5)},
		{"bad time", with("time", "yesterday")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := events.Decode(tt.in)
			require.ErrorIs(t, err, events.ErrInvalid)
		})
	}
	_, err := events.Decode(with("x", "y"))
	require.NoError(t, err, "the valid base decodes")
}

func TestPayloadErrors(t *testing.T) {
	e := events.Envelope{ID: "x", Room: "r", Type: "peer.exploded.v1", Data: json.RawMessage(`{}`)}
	_, err := e.Payload()
	require.ErrorIs(t, err, events.ErrUnknownType)

	e.Type = events.TypeTrackPublished
	e.Data = json.RawMessage(`{"peer":5}`)
	_, err = e.Payload()
	require.ErrorIs(t, err, events.ErrInvalid)
	require.NotErrorIs(t, err, events.ErrUnknownType)

	e.Data = json.RawMessage(`not json`)
	_, err = e.Payload()
	require.ErrorIs(t, err, events.ErrInvalid)
}

// TestEndingIDFrozen: the ids of the events that end a session are derived the same way by
// every writer and every version (a survivor, the node restarted, the session itself), or
// JetStream's duplicate window cannot store them once. The value was computed independently
// (sha256 of the parts, each followed by a zero byte).
func TestEndingIDFrozen(t *testing.T) {
	joined := time.Date(2025, 12, 7, 12, 0, 0, 0, time.UTC)
	require.Equal(t, "lost-f227938f0632116d3be507a8c29929d0", events.EndingID("r1", "b", "p1", joined, "left"))
	require.NotEqual(t, events.EndingID("r1", "b", "p1", joined, "left"), events.EndingID("r1", "b", "p1", joined.Add(time.Microsecond), "left"))
	require.True(t, events.ValidID(events.EndingID("r1", "b", "p1", joined, "track", "cam")))
}
