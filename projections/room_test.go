package projections_test

import (
	"encoding/json"
	"flag"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/events"
	"github.com/jetmedia/jetmedia/projections"
)

var t0 = time.Date(2026, 11, 3, 10, 0, 0, 0, time.UTC)

// ev builds a stored event of room "r" at seq (time t0 + seq seconds).
func ev(t testing.TB, seq uint64, p events.Payload) events.Envelope {
	t.Helper()
	e, err := events.New(events.Meta{Room: "r", Node: "n1", Time: t0.Add(time.Duration(seq) * time.Second)}, p)
	require.NoError(t, err)
	e.Seq = seq
	return e
}

func at(seq uint64) time.Time { return t0.Add(time.Duration(seq) * time.Second) }

// base is a room with a publisher (two tracks), a viewer subscribed to both and a second
// publisher whose track the first publisher watches.
func base(t testing.TB) []events.Envelope {
	return []events.Envelope{
		ev(t, 1, events.RoomCreated{Node: "n1"}),
		ev(t, 2, events.PeerJoined{Peer: "pub", Transport: "whip", Role: "publisher", Node: "n1", RemoteAddr: "1.2.3.4:5", UserAgent: "obs"}),
		ev(t, 3, events.TrackPublished{Peer: "pub", Track: "a", Kind: "audio", Codec: "audio/opus", ClockRate: 48000, Channels: 2, Layers: []string{"0"}}),
		ev(t, 4, events.TrackPublished{Peer: "pub", Track: "v", Kind: "video", Codec: "video/VP8", ClockRate: 90000, FmtpLine: "x=1", Layers: []string{"0", "1"}}),
		ev(t, 5, events.PeerJoined{Peer: "view", Transport: "whep", Role: "viewer", Node: "n2"}),
		ev(t, 6, events.SubscriptionStarted{Peer: "view", Track: "a", Publisher: "pub"}),
		ev(t, 7, events.SubscriptionStarted{Peer: "view", Track: "v", Publisher: "pub"}),
		ev(t, 8, events.PeerJoined{Peer: "cam2", Transport: "whip", Role: "publisher", Node: "n2"}),
		ev(t, 9, events.TrackPublished{Peer: "cam2", Track: "c", Kind: "video", Codec: "video/VP8", ClockRate: 90000, Layers: []string{"0"}}),
		ev(t, 10, events.SubscriptionStarted{Peer: "pub", Track: "c", Publisher: "cam2"}),
	}
}

func baseRoom(t testing.TB) projections.Room {
	r, err := projections.FoldAll("r", base(t))
	require.NoError(t, err)
	return r
}

func TestFoldBase(t *testing.T) {
	r := baseRoom(t)
	require.True(t, r.Exists())
	require.Equal(t, "r", r.Room)
	require.Equal(t, "n1", r.Node)
	require.Equal(t, at(1), r.CreatedAt)
	require.Equal(t, uint64(10), r.LastSeq)
	require.Equal(t, at(10), r.LastEvent)
	require.Equal(t, []string{"cam2", "pub", "view"}, r.PeerIDs())
	require.Equal(t, []string{"a", "c", "v"}, r.TrackIDs())
	require.Equal(t, projections.Peer{Peer: "pub", Transport: "whip", Role: "publisher", Node: "n1", RemoteAddr: "1.2.3.4:5", UserAgent: "obs", JoinedAt: at(2)}, r.Peers["pub"])
	require.Equal(t, projections.Track{Track: "v", Peer: "pub", Kind: "video", Codec: "video/VP8", ClockRate: 90000, FmtpLine: "x=1", Layers: []string{"0", "1"}, PublishedAt: at(4)}, r.Tracks["v"])
	require.Equal(t, projections.Track{Track: "a", Peer: "pub", Kind: "audio", Codec: "audio/opus", ClockRate: 48000, Channels: 2, Layers: []string{"0"}, PublishedAt: at(3)}, r.Tracks["a"])
	require.Len(t, r.Subs, 3)
	require.Equal(t, projections.Subscription{Peer: "view", Track: "v", Publisher: "pub", Since: at(7)}, r.Subs[projections.SubKey("view", "v")])
}

func TestFold(t *testing.T) {
	tests := []struct {
		name  string
		event events.Payload
		check func(t *testing.T, r projections.Room)
	}{
		{"second room.created keeps the first", events.RoomCreated{Node: "other"}, func(t *testing.T, r projections.Room) {
			require.Equal(t, "n1", r.Node)
			require.Equal(t, at(1), r.CreatedAt)
		}},
		{"peer.joined adds a peer", events.PeerJoined{Peer: "new", Transport: "whep", Role: "viewer", Node: "n3"}, func(t *testing.T, r projections.Room) {
			require.Equal(t, projections.Peer{Peer: "new", Transport: "whep", Role: "viewer", Node: "n3", JoinedAt: at(11)}, r.Peers["new"])
			require.Len(t, r.Peers, 4)
		}},
		{"peer.joined keeps the token's identity and name", events.PeerJoined{Peer: "new", Transport: "whip", Role: "publisher", Node: "n3", Identity: "alice", Name: "Alice"}, func(t *testing.T, r projections.Room) {
			require.Equal(t, "alice", r.Peers["new"].Identity)
			require.Equal(t, "Alice", r.Peers["new"].Name)
		}},
		{"peer.joined again replaces the peer", events.PeerJoined{Peer: "view", Transport: "whep", Role: "viewer", Node: "n9"}, func(t *testing.T, r projections.Room) {
			require.Equal(t, "n9", r.Peers["view"].Node)
			require.Len(t, r.Subs, 3, "subscriptions stay")
		}},
		{"peer.left of a publisher removes its tracks, subs to them and its own subs", events.PeerLeft{Peer: "pub", Reason: "closed"}, func(t *testing.T, r projections.Room) {
			require.Equal(t, []string{"cam2", "view"}, r.PeerIDs())
			require.Equal(t, []string{"c"}, r.TrackIDs())
			require.Empty(t, r.Subs, "view's subs to pub's tracks and pub's sub to c are gone")
		}},
		{"peer.left of a viewer removes its subs only", events.PeerLeft{Peer: "view", Reason: "disconnected"}, func(t *testing.T, r projections.Room) {
			require.Equal(t, []string{"cam2", "pub"}, r.PeerIDs())
			require.Equal(t, []string{"a", "c", "v"}, r.TrackIDs())
			require.Equal(t, []string{"pub.c"}, keys(r.Subs))
		}},
		{"peer.left of an unknown peer changes nothing but the checkpoint", events.PeerLeft{Peer: "ghost"}, func(t *testing.T, r projections.Room) {
			require.Len(t, r.Peers, 3)
			require.Len(t, r.Tracks, 3)
			require.Len(t, r.Subs, 3)
		}},
		{"track.published adds a track", events.TrackPublished{Peer: "view", Track: "s", Kind: "video", Codec: "video/H264", ClockRate: 90000}, func(t *testing.T, r projections.Room) {
			require.Equal(t, projections.Track{Track: "s", Peer: "view", Kind: "video", Codec: "video/H264", ClockRate: 90000, PublishedAt: at(11)}, r.Tracks["s"])
		}},
		{"track.unpublished removes the track and its subs", events.TrackUnpublished{Peer: "pub", Track: "v"}, func(t *testing.T, r projections.Room) {
			require.Equal(t, []string{"a", "c"}, r.TrackIDs())
			require.Equal(t, []string{"pub.c", "view.a"}, keys(r.Subs))
			require.Len(t, r.Peers, 3)
		}},
		{"subscription.started adds a sub", events.SubscriptionStarted{Peer: "view", Track: "c", Publisher: "cam2"}, func(t *testing.T, r projections.Room) {
			require.Equal(t, projections.Subscription{Peer: "view", Track: "c", Publisher: "cam2", Since: at(11)}, r.Subs["view.c"])
			require.Len(t, r.Subs, 4)
		}},
		{"peer.joined keeps the metadata", events.PeerJoined{Peer: "new", Transport: "sdk", Role: "publisher", Node: "n3", Metadata: `{"seat":1}`}, func(t *testing.T, r projections.Room) {
			require.Equal(t, `{"seat":1}`, r.Peers["new"].Metadata)
		}},
		{"peer.updated replaces the metadata and nothing else", events.PeerUpdated{Peer: "pub", Metadata: "hand up"}, func(t *testing.T, r projections.Room) {
			want := baseRoom(t).Peers["pub"]
			want.Metadata = "hand up"
			require.Equal(t, want, r.Peers["pub"])
		}},
		{"peer.updated of an unknown peer adds nobody", events.PeerUpdated{Peer: "ghost", Metadata: "x"}, func(t *testing.T, r projections.Room) {
			require.Len(t, r.Peers, 3)
			require.NotContains(t, r.Peers, "ghost")
		}},
		{"track.published keeps source and muted", events.TrackPublished{Peer: "view", Track: "s", Kind: "video", Codec: "video/VP8", ClockRate: 90000, Layers: []string{"0"}, Source: "screen", Muted: true}, func(t *testing.T, r projections.Room) {
			require.Equal(t, "screen", r.Tracks["s"].Source)
			require.True(t, r.Tracks["s"].Muted)
		}},
		{"track.updated mutes the track and nothing else", events.TrackUpdated{Peer: "pub", Track: "v", Muted: true}, func(t *testing.T, r projections.Room) {
			want := baseRoom(t).Tracks["v"]
			want.Muted = true
			require.Equal(t, want, r.Tracks["v"])
			require.False(t, r.Tracks["a"].Muted)
		}},
		{"track.updated by another peer than the publisher is void", events.TrackUpdated{Peer: "cam2", Track: "v", Muted: true}, func(t *testing.T, r projections.Room) {
			require.False(t, r.Tracks["v"].Muted)
		}},
		{"track.updated of an unknown track adds nothing", events.TrackUpdated{Peer: "pub", Track: "zz", Muted: true}, func(t *testing.T, r projections.Room) {
			require.Equal(t, []string{"a", "c", "v"}, r.TrackIDs())
		}},
		{"subscription.ended removes one sub", events.SubscriptionEnded{Peer: "view", Track: "a"}, func(t *testing.T, r projections.Room) {
			require.Equal(t, []string{"pub.c", "view.v"}, keys(r.Subs))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := baseRoom(t)
			snapshot := entries(t, before)
			r, err := projections.Fold(before, ev(t, 11, tt.event))
			require.NoError(t, err)
			require.Equal(t, uint64(11), r.LastSeq)
			require.Equal(t, at(11), r.LastEvent)
			tt.check(t, r)
			require.Equal(t, snapshot, entries(t, before), "Fold does not mutate its input")
		})
	}
}

func TestFoldRedeliveryIsNoOp(t *testing.T) {
	r := baseRoom(t)
	want := entries(t, r)
	for _, seq := range []uint64{10, 5, 1} {
		got, err := projections.Fold(r, ev(t, seq, events.PeerLeft{Peer: "pub"}))
		require.NoError(t, err)
		require.Equal(t, want, entries(t, got), "seq %d <= LastSeq", seq)
	}
	// Even a redelivered event with bad data or of another room is a no-op, not an error:
	// it was folded (or skipped) when first seen.
	bad := ev(t, 3, events.PeerLeft{})
	bad.Data = json.RawMessage(`{"peer":1}`)
	_, err := projections.Fold(r, bad)
	require.NoError(t, err)
}

func TestFoldUnknownTypeAdvancesCheckpoint(t *testing.T) {
	r := baseRoom(t)
	e := ev(t, 15, events.PeerLeft{Peer: "pub"})
	e.Type = "peer.teleported.v3"
	got, err := projections.Fold(r, e)
	require.NoError(t, err)
	require.Equal(t, uint64(15), got.LastSeq)
	require.Equal(t, at(15), got.LastEvent)
	require.Len(t, got.Peers, 3, "payload not applied")
}

func TestFoldErrors(t *testing.T) {
	r := baseRoom(t)
	want := entries(t, r)

	bad := ev(t, 11, events.PeerLeft{})
	bad.Data = json.RawMessage(`{"peer":1}`)
	got, err := projections.Fold(r, bad)
	require.ErrorIs(t, err, events.ErrInvalid)
	require.Equal(t, want, entries(t, got), "state unchanged on error")

	other := ev(t, 11, events.PeerLeft{Peer: "pub"})
	other.Room = "elsewhere"
	got, err = projections.Fold(r, other)
	require.Error(t, err)
	require.Equal(t, want, entries(t, got))
}

func TestFoldZeroRoom(t *testing.T) {
	// A Room without maps (the zero value) folds like NewRoom.
	r, err := projections.Fold(projections.Room{Room: "r"}, ev(t, 1, events.PeerJoined{Peer: "p"}))
	require.NoError(t, err)
	require.Equal(t, []string{"p"}, r.PeerIDs())
}

func TestClone(t *testing.T) {
	r := baseRoom(t)
	c := r.Clone()
	c.Tracks["v"] = projections.Track{Track: "other"}
	delete(c.Peers, "pub")
	delete(c.Subs, "view.a")
	require.Equal(t, "v", r.Tracks["v"].Track, "Clone copies the maps")
	require.Contains(t, r.Peers, "pub")
	require.Contains(t, r.Subs, "view.a")
}

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

// TestEntriesGolden pins the KV form of a room: keys and the exact bytes of every value. A
// change here changes what live buckets hold, so it needs a migration (or a rebuild).
func TestEntriesGolden(t *testing.T) {
	evs := append(base(t), ev(t, 11, events.TrackUnpublished{Peer: "pub", Track: "a"}))
	r, err := projections.FoldAll("r", evs)
	require.NoError(t, err)
	m := entries(t, r)
	var b strings.Builder
	for _, k := range keys(m) {
		b.WriteString(k + " " + m[k] + "\n")
	}
	path := filepath.Join("testdata", "room_entries.golden")
	if *update {
		require.NoError(t, os.WriteFile(path, []byte(b.String()), 0o644))
	}
	want, err := os.ReadFile(path)
	require.NoError(t, err, "run with -update to create it")
	require.Equal(t, string(want), b.String())
}

func keys[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }

func entries(t testing.TB, r projections.Room) map[string]string {
	t.Helper()
	m, err := projections.Entries(r)
	require.NoError(t, err)
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = string(v)
	}
	return out
}

// TestFoldMuteAndMetadataRoundTrip: mute, unmute and metadata updates reach the KV form and
// read back through ApplyEntry as the same room (what LoadRoom and history do).
func TestFoldMuteAndMetadataRoundTrip(t *testing.T) {
	evs := append(base(t),
		ev(t, 11, events.PeerJoined{Peer: "sdk1", Transport: "sdk", Role: "publisher", Node: "n1", Metadata: "m0"}),
		ev(t, 12, events.TrackPublished{Peer: "sdk1", Track: "mic", Kind: "audio", Codec: "audio/opus", ClockRate: 48000, Layers: []string{"0"}, Source: "mic"}),
		ev(t, 13, events.TrackUpdated{Peer: "sdk1", Track: "mic", Muted: true}),
		ev(t, 14, events.PeerUpdated{Peer: "sdk1", Metadata: "m1"}),
		ev(t, 15, events.TrackUpdated{Peer: "sdk1", Track: "mic", Muted: false}),
		ev(t, 16, events.TrackUpdated{Peer: "sdk1", Track: "mic", Muted: true}),
	)
	r, err := projections.FoldAll("r", evs)
	require.NoError(t, err)
	require.Equal(t, "m1", r.Peers["sdk1"].Metadata)
	require.Equal(t, projections.Track{Track: "mic", Peer: "sdk1", Kind: "audio", Codec: "audio/opus", ClockRate: 48000,
		Layers: []string{"0"}, PublishedAt: at(12), Source: "mic", Muted: true}, r.Tracks["mic"])
	m, err := projections.Entries(r)
	require.NoError(t, err)
	require.JSONEq(t, `{"track":"mic","peer":"sdk1","kind":"audio","codec":"audio/opus","clock_rate":48000,"layers":["0"],"published_at":"2026-11-03T10:00:12Z","source":"mic","muted":true}`, string(m["r.track.mic"]))
	back := projections.NewRoom("r")
	for k, v := range m {
		require.NoError(t, projections.ApplyEntry(&back, k, v))
	}
	require.Equal(t, entries(t, r), entries(t, back))
}

// An event that was not read from the log (Seq 0) is folded but keeps the room's checkpoint.
func TestFoldUnstoredEventKeepsCheckpoint(t *testing.T) {
	r, err := projections.FoldAll("r", []events.Envelope{ev(t, 7, events.RoomCreated{Node: "n1"})})
	require.NoError(t, err)
	r, err = projections.Fold(r, ev(t, 0, events.PeerJoined{Peer: "p", Transport: "whip", Role: "publisher", Node: "n1"}))
	require.NoError(t, err)
	require.Equal(t, uint64(7), r.LastSeq)
	require.Contains(t, r.Peers, "p")
}
