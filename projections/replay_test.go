package projections_test

import (
	"cmp"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/events"
	"github.com/jetmedia/jetmedia/projections"
)

// randomLog returns a plausible room log of up to n events: joins, leaves, publishes,
// subscriptions, the occasional unknown event type and redelivered duplicate. Sequences grow
// with gaps, as when other rooms' events interleave in the stream.
func randomLog(t testing.TB, rng *rand.Rand, n int) []events.Envelope {
	var (
		log    []events.Envelope
		seq    uint64
		peers  []string
		tracks = map[string]string{} // track → publisher
		nextID int
	)
	id := func(prefix string) string { nextID++; return fmt.Sprintf("%s%d", prefix, nextID) }
	pick := func(s []string) string {
		if len(s) == 0 || rng.IntN(10) == 0 {
			return "ghost" // sometimes refer to something that is not there
		}
		return s[rng.IntN(len(s))]
	}
	add := func(p events.Payload) {
		seq += 1 + uint64(rng.IntN(3))
		e, err := events.New(events.Meta{Room: "r", Node: "n1", Time: t0.Add(time.Duration(seq) * time.Millisecond)}, p)
		require.NoError(t, err)
		e.Seq = seq
		log = append(log, e)
	}
	add(events.RoomCreated{Node: "n1"})
	for len(log) < n {
		trackIDs := slices.Sorted(maps.Keys(tracks))
		switch op := rng.IntN(100); {
		case op < 25:
			p := id("p")
			peers = append(peers, p)
			add(events.PeerJoined{Peer: p, Transport: []string{"whip", "whep"}[rng.IntN(2)], Role: "viewer", Node: fmt.Sprint("n", rng.IntN(3))})
		case op < 35:
			p := pick(peers)
			peers = slices.DeleteFunc(peers, func(x string) bool { return x == p })
			add(events.PeerLeft{Peer: p, Reason: "closed"})
		case op < 55:
			p, tr := pick(peers), id("t")
			tracks[tr] = p
			layers := []string{"0"}
			if rng.IntN(3) == 0 {
				layers = nil
			}
			add(events.TrackPublished{Peer: p, Track: tr, Kind: "video", Codec: "video/VP8", ClockRate: 90000, Layers: layers})
		case op < 62:
			tr := pick(trackIDs)
			delete(tracks, tr)
			add(events.TrackUnpublished{Peer: "x", Track: tr})
		case op < 82:
			tr := pick(trackIDs)
			add(events.SubscriptionStarted{Peer: pick(peers), Track: tr, Publisher: tracks[tr]})
		case op < 90:
			add(events.SubscriptionEnded{Peer: pick(peers), Track: pick(trackIDs)})
		case op < 94:
			add(events.RoomCreated{Node: "late"})
		case op < 97 && len(log) > 1:
			dup := log[rng.IntN(len(log))] // redelivery: same event, same sequence
			log = append(log, dup)
		default:
			add(events.PeerLeft{Peer: pick(peers)})
			log[len(log)-1].Type = "room.renamed.v7" // from a newer writer
		}
	}
	return log
}

// roundTrip writes r as KV entries and reads it back in a random key order, as LoadRoom does
// after a restart.
func roundTrip(t testing.TB, rng *rand.Rand, r projections.Room) projections.Room {
	m, err := projections.Entries(r)
	require.NoError(t, err)
	ks := slices.Sorted(maps.Keys(m))
	rng.Shuffle(len(ks), func(i, j int) { ks[i], ks[j] = ks[j], ks[i] })
	back := projections.NewRoom(r.Room)
	for _, k := range ks {
		require.NoError(t, projections.ApplyEntry(&back, k, m[k]))
	}
	return back
}

// TestReplayEquivalence: folding a log in one go, or in chunks with the state written to KV
// entries and read back between chunks (a runner restarting), gives identical entries.
func TestReplayEquivalence(t *testing.T) {
	for seed := range uint64(300) {
		rng := rand.New(rand.NewPCG(seed, 0x6a65746d65646961))
		log := randomLog(t, rng, 1+rng.IntN(120))

		whole, err := projections.FoldAll("r", log)
		require.NoError(t, err, "seed %d", seed)

		r := projections.NewRoom("r")
		for i := 0; i < len(log); {
			end := min(len(log), i+1+rng.IntN(20))
			for _, e := range log[i:end] {
				r, err = projections.Fold(r, e)
				require.NoError(t, err, "seed %d", seed)
			}
			r = roundTrip(t, rng, r)
			// Redelivering the last chunk after the restart changes nothing.
			for _, e := range log[i:end] {
				r, err = projections.Fold(r, e)
				require.NoError(t, err, "seed %d", seed)
			}
			i = end
		}
		require.Equal(t, entries(t, whole), entries(t, r), "seed %d: chunked replay differs", seed)
		maxSeq := slices.MaxFunc(log, func(a, b events.Envelope) int { return cmp.Compare(a.Seq, b.Seq) }).Seq
		require.Equal(t, maxSeq, r.LastSeq, "seed %d", seed)
	}
}
