package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/events"
	"github.com/jetmedia/jetmedia/pipeline/eventlog"
	"github.com/jetmedia/jetmedia/projections"
	"github.com/jetmedia/jetmedia/projections/logtools"
	"github.com/jetmedia/jetmedia/tests/loggen"
)

// forgeByRecreatingStream is the attack the hash chain alone cannot see, done the way someone
// with the account's JetStream admin rights can do it: the EVENTS stream denies deleting and
// purging messages, but not deleting the stream. The forger copies every message out, deletes
// the stream, creates it again with the same configuration and publishes the messages back in
// order (so every event keeps its stream sequence and its Nats-Msg-Id), except that the event of
// room at seq is altered (its actor becomes "mallory") and every later event of the room is
// re-chained: its prevhash set to the hash of the forged predecessor.
func forgeByRecreatingStream(t *testing.T, js jetstream.JetStream, room string, seq uint64) {
	t.Helper()
	ctx := t.Context()
	stream, err := js.Stream(ctx, eventlog.StreamEvents)
	require.NoError(t, err)
	info, err := stream.Info(ctx)
	require.NoError(t, err)
	var msgs []*jetstream.RawStreamMsg
	for s := info.State.FirstSeq; s <= info.State.LastSeq; s++ {
		m, err := stream.GetMsg(ctx, s)
		require.NoError(t, err)
		msgs = append(msgs, m)
	}
	require.NoError(t, js.DeleteStream(ctx, eventlog.StreamEvents))
	_, err = js.CreateStream(ctx, info.Config)
	require.NoError(t, err)
	prev := ""
	for _, m := range msgs {
		raw := m.Data
		if m.Subject[3:3+len(room)] == room && m.Subject[3+len(room)] == '.' {
			if m.Sequence >= seq {
				e, err := events.Decode(raw)
				require.NoError(t, err)
				if m.Sequence == seq {
					e.Actor = "mallory"
				}
				e.PrevHash = prev
				raw, err = events.Encode(e)
				require.NoError(t, err)
			}
			prev = events.Hash(raw)
		}
		ack, err := js.PublishMsg(ctx, &nats.Msg{Subject: m.Subject, Header: m.Header, Data: raw})
		require.NoError(t, err)
		require.Equal(t, m.Sequence, ack.Sequence, "the copy keeps the sequences")
	}
}

// TestAuditAnchor: an anchor taken with a key; the log grows honestly and verify --anchor
// holds; then the forger rewrites an event below the anchor and re-chains the room's tail (see
// forgeByRecreatingStream). Plain verify finds every chain intact; verify --anchor reports the
// anchored head that no longer matches and exits with an error. An edited anchor, or one read
// without its key, is refused.
func TestAuditAnchor(t *testing.T) {
	dir := withStore(t, func(js jetstream.JetStream) {
		ctx := t.Context()
		require.NoError(t, loggen.Write(ctx, js, 200, loggen.New("r", 1, genStart, time.Second).Next))
		require.NoError(t, loggen.Write(ctx, js, 100, loggen.New("s", 2, genStart, time.Second).Next))
	})
	data := "--data=" + dir
	tmp := t.TempDir()
	key := filepath.Join(tmp, "key")
	require.NoError(t, os.WriteFile(key, []byte("0123456789abcdef0123456789abcdef\n"), 0o600))
	anchorFile := filepath.Join(tmp, "anchor.json")

	_, err := runCLI(t, "audit", "anchor", data, "--out", anchorFile, "--anchor-key", key, "--node", "ops1")
	require.NoError(t, err)
	raw, err := os.ReadFile(anchorFile)
	require.NoError(t, err)
	a, err := projections.ParseAnchor(raw)
	require.NoError(t, err)
	require.Equal(t, "ops1", a.Node)
	require.NotEmpty(t, a.HMAC)
	require.Len(t, a.Rooms, 2)
	require.Equal(t, projections.RoomAnchor{Room: "r", Seq: 200, ID: a.Rooms[0].ID, Hash: a.Rooms[0].Hash, Events: 200}, a.Rooms[0])
	require.Equal(t, uint64(300), a.Rooms[1].Seq)
	require.Len(t, a.Rooms[0].Hash, 64)

	// An unsigned anchor of one room, on stdout.
	out, err := runCLI(t, "audit", "anchor", data, "--room", "s")
	require.NoError(t, err)
	one, err := projections.ParseAnchor([]byte(out))
	require.NoError(t, err)
	require.Empty(t, one.HMAC)
	require.Equal(t, a.Rooms[1], one.Rooms[0])

	// (b) The log grows honestly after the anchor: the anchor still holds.
	onStore(t, dir, func(js jetstream.JetStream) {
		for _, e := range loggen.Events("r", 20, 3, genStart.Add(time.Hour), time.Second) {
			_, err := eventlog.NewAppender(js, "n1").Append(t.Context(), e)
			require.NoError(t, err)
		}
	})
	out, err = runCLI(t, "audit", "verify", data, "--anchor", anchorFile, "--anchor-key", key)
	require.NoError(t, err)
	require.Contains(t, out, "room r: intact: 220 events")
	require.Contains(t, out, "(2 rooms) holds")

	// The anchor's signature: needed, and covering every field.
	_, err = runCLI(t, "audit", "verify", data, "--anchor", anchorFile)
	require.ErrorIs(t, err, projections.ErrAnchorMAC)
	edited := a
	edited.Rooms = append([]projections.RoomAnchor(nil), a.Rooms...)
	edited.Rooms[0].Seq = 199
	rawEdited, err := json.Marshal(edited)
	require.NoError(t, err)
	editedFile := filepath.Join(tmp, "edited.json")
	require.NoError(t, os.WriteFile(editedFile, rawEdited, 0o600))
	_, err = runCLI(t, "audit", "verify", data, "--anchor", editedFile, "--anchor-key", key)
	require.ErrorIs(t, err, projections.ErrAnchorMAC)

	// (a) Event 50 of room r rewritten, the room's tail re-chained.
	onStore(t, dir, func(js jetstream.JetStream) {
		forgeByRecreatingStream(t, js, "r", 50)
		stream, err := js.Stream(t.Context(), eventlog.StreamEvents)
		require.NoError(t, err)
		m, err := stream.GetMsg(t.Context(), 50)
		require.NoError(t, err)
		e, err := events.Decode(m.Data)
		require.NoError(t, err)
		require.Equal(t, "mallory", e.Actor, "the forgery is in the log")
	})
	out, err = runCLI(t, "audit", "verify", data)
	require.NoError(t, err, "the re-chained forgery passes the chain check alone")
	require.Contains(t, out, "all 2 rooms intact")

	out, err = runCLI(t, "audit", "verify", data, "--anchor", anchorFile, "--anchor-key", key)
	require.ErrorIs(t, err, logtools.ErrAnchorMismatch)
	require.Contains(t, out, "room r: anchor mismatch at seq 200: stored hash ")
	require.NotContains(t, out, "room s: anchor mismatch")

	out, err = runCLI(t, "audit", "verify", data, "--anchor", anchorFile, "--anchor-key", key, "--room", "r", "--json")
	require.ErrorIs(t, err, logtools.ErrAnchorMismatch)
	var rep struct {
		Rooms      []logtools.ChainReport       `json:"rooms"`
		Mismatches []projections.AnchorMismatch `json:"anchor_mismatches"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &rep))
	require.Len(t, rep.Rooms, 1)
	require.True(t, rep.Rooms[0].Intact)
	require.Len(t, rep.Mismatches, 1)
	require.Equal(t, uint64(200), rep.Mismatches[0].Seq)
	require.Equal(t, a.Rooms[0].Hash, rep.Mismatches[0].Want)
	require.NotEqual(t, rep.Mismatches[0].Want, rep.Mismatches[0].Got)

	// Room s was not touched: its anchor holds on its own.
	_, err = runCLI(t, "audit", "verify", data, "--anchor", anchorFile, "--anchor-key", key, "--room", "s")
	require.NoError(t, err)

	_, err = runCLI(t, "audit", "verify", data, "--anchor-key", key)
	require.ErrorContains(t, err, "needs --anchor")
	_, err = runCLI(t, "audit", "anchor", data, "--anchor-key", anchorFile+".missing")
	require.ErrorContains(t, err, "--anchor-key")
}

// TestAuditAnchorTwoWriters: a room with two writers, the region's appender and an edge whose
// events arrive copied (with JetStream's source header, as the region's log sources an edge's).
// Its chain verifies with writer links, and two events nothing links to: the anchor holds
// them beside the head (no later link protects them) and verify --anchor checks them.
func TestAuditAnchorTwoWriters(t *testing.T) {
	const room = "two"
	dir := withStore(t, func(js jetstream.JetStream) {
		ctx := t.Context()
		region := eventlog.NewAppender(js, "r1")
		evs := loggen.Events(room, 7, 5, genStart, time.Second)
		// The edge's log: a stream of its own, copied into EVENTS as a region sources an edge's
		// (a subject transform stands for the edge's other domain).
		_, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "EDGE", Subjects: []string{"edge.ev.>"}})
		require.NoError(t, err)
		s, err := js.Stream(ctx, eventlog.StreamEvents)
		require.NoError(t, err)
		cfg := s.CachedInfo().Config
		cfg.Sources = []*jetstream.StreamSource{{Name: "EDGE",
			SubjectTransforms: []jetstream.SubjectTransformConfig{{Source: "edge.ev.>", Destination: "ev.>"}}}}
		_, err = js.UpdateStream(ctx, cfg)
		require.NoError(t, err)
		edgeHead := ""
		copyFromEdge := func(e events.Envelope) {
			e.Node, e.PrevHash = "edge1", edgeHead
			raw, err := events.Encode(e)
			require.NoError(t, err)
			edgeHead = events.Hash(raw)
			before, err := s.Info(ctx)
			require.NoError(t, err)
			want := before.State.Msgs + 1
			_, err = js.Publish(ctx, "edge."+eventlog.EventSubject(room, "peer_joined"), raw)
			require.NoError(t, err)
			require.Eventually(t, func() bool {
				info, err := s.Info(ctx)
				return err == nil && info.State.Msgs == want
			}, 10*time.Second, 10*time.Millisecond, "the edge's event copied into the log")
		}
		for _, e := range evs[:3] { // seq 1-3: the region
			_, err := region.Append(ctx, e)
			require.NoError(t, err)
		}
		copyFromEdge(evs[3])                // seq 4: the edge's first, no prevhash
		copyFromEdge(evs[4])                // seq 5: linked to seq 4, the head
		_, err = region.Append(ctx, evs[5]) // seq 6: the region, linked to seq 5
		require.NoError(t, err)
		copyFromEdge(evs[6]) // seq 7: linked to seq 5, past seq 6
	})
	data := "--data=" + dir
	out, err := runCLI(t, "audit", "verify", data, "--room", room)
	require.NoError(t, err)
	require.Contains(t, out, "room two: intact: 7 events")
	require.Contains(t, out, "1 copied events link to their writer's previous event, 1 start a writer's chain; no later event links to seq [3 6]")

	anchorFile := filepath.Join(t.TempDir(), "anchor.json")
	_, err = runCLI(t, "audit", "anchor", data, "--out", anchorFile)
	require.NoError(t, err)
	raw, err := os.ReadFile(anchorFile)
	require.NoError(t, err)
	a, err := projections.ParseAnchor(raw)
	require.NoError(t, err)
	require.Len(t, a.Rooms, 1)
	require.EqualValues(t, 7, a.Rooms[0].Seq)
	require.Len(t, a.Rooms[0].Unlinked, 2)
	require.EqualValues(t, 3, a.Rooms[0].Unlinked[0].Seq)
	require.EqualValues(t, 6, a.Rooms[0].Unlinked[1].Seq)
	_, err = runCLI(t, "audit", "verify", data, "--anchor", anchorFile)
	require.NoError(t, err)

	// EVENTS denies deleting a message and the server refuses a published source header, so
	// the stored seq 6 cannot be forged here: the anchor claims another hash for it instead.
	// Every link of the log holds; the anchor's check of seq 6 does not.
	wrong := a
	wrong.Rooms = []projections.RoomAnchor{a.Rooms[0]}
	wrong.Rooms[0].Unlinked = []projections.AnchoredEvent{a.Rooms[0].Unlinked[0], {Seq: 6, Hash: a.Rooms[0].Hash}}
	rawWrong, err := json.Marshal(wrong)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(anchorFile, rawWrong, 0o600))
	out, err = runCLI(t, "audit", "verify", data, "--anchor", anchorFile)
	require.ErrorIs(t, err, logtools.ErrAnchorMismatch)
	require.Contains(t, out, "room two: anchor mismatch at seq 6")
}
