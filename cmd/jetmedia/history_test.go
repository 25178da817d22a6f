package main

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/events"
	"github.com/jetmedia/jetmedia/pipeline/eventlog"
	"github.com/jetmedia/jetmedia/pipeline/natsnode"
	"github.com/jetmedia/jetmedia/projections"
	"github.com/jetmedia/jetmedia/projections/logtools"
	"github.com/jetmedia/jetmedia/projections/roomsapi"
	"github.com/jetmedia/jetmedia/tests/loggen"
)

var genStart = time.Date(2026, 11, 3, 10, 0, 0, 0, time.UTC)

// withStore runs fn on a JetStream store in a fresh data directory, then shuts the server down
// so that the CLI can open the directory itself.
func withStore(t *testing.T, fn func(js jetstream.JetStream)) string {
	t.Helper()
	dir := t.TempDir()
	onStore(t, dir, func(js jetstream.JetStream) {
		ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
		defer cancel()
		require.NoError(t, eventlog.Declare(ctx, js, eventlog.StorageConfig{}))
		fn(js)
	})
	return dir
}

// onStore runs fn on the JetStream store in dir (as withStore made it), then shuts it down.
func onStore(t *testing.T, dir string, fn func(js jetstream.JetStream)) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	srv, err := natsnode.StartServer(ctx, natsnode.ServerConfig{Name: "history-test", JetStream: true, StoreDir: dir})
	require.NoError(t, err)
	defer srv.Shutdown()
	nc, err := srv.Connect("history-test")
	require.NoError(t, err)
	defer nc.Close()
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	fn(js)
}

func TestAuditVerify(t *testing.T) {
	var forgedSeq uint64
	dir := withStore(t, func(js jetstream.JetStream) {
		ctx := t.Context()
		require.NoError(t, loggen.Write(ctx, js, 300, loggen.New("good", 1, genStart, time.Second).Next))
		require.NoError(t, loggen.Write(ctx, js, 50, loggen.New("bad", 2, genStart, time.Second).Next))
		// A forged event written straight onto the room's subject, bypassing the appender.
		e, err := events.New(events.Meta{Room: "bad", Actor: "mallory", Node: "n1", Time: genStart},
			events.PeerJoined{Peer: "mallory", Transport: events.TransportWHIP, Role: "publisher", Node: "n1"})
		require.NoError(t, err)
		raw, err := events.Encode(e)
		require.NoError(t, err)
		ack, err := js.Publish(ctx, eventlog.EventSubject("bad", "peer_joined"), raw)
		require.NoError(t, err)
		forgedSeq = ack.Sequence
		// The appender chains later events after it, so only the forged one breaks.
		_, err = eventlog.NewAppender(js, "n1").Append(ctx, e)
		require.NoError(t, err)
		_, err = eventlog.NewAppender(js, "n1").Append(ctx, loggen.Events("bad", 2, 3, genStart, 0)[1])
		require.NoError(t, err)
	})
	data := "--data=" + dir

	out, err := runCLI(t, "audit", "verify", data, "--room", "good")
	require.NoError(t, err)
	require.Contains(t, out, "room good: intact: 300 events (seq 1..300), head ")

	out, err = runCLI(t, "audit", "verify", data, "--room", "bad")
	require.ErrorIs(t, err, logtools.ErrBroken)
	require.Contains(t, out, "room bad: BROKEN at seq 351 ")
	require.Contains(t, out, "found none")

	out, err = runCLI(t, "audit", "verify", data)
	require.ErrorIs(t, err, logtools.ErrBroken)
	require.Contains(t, out, "room good: intact: 300 events")
	require.Contains(t, out, "1 of 2 rooms BROKEN")

	out, err = runCLI(t, "audit", "verify", data, "--json")
	require.True(t, errors.Is(err, logtools.ErrBroken))
	var reports []logtools.ChainReport
	require.NoError(t, json.Unmarshal([]byte(out), &reports))
	require.Len(t, reports, 2)
	require.Equal(t, "bad", reports[0].Room)
	require.False(t, reports[0].Intact)
	require.Equal(t, forgedSeq, reports[0].Break.Seq)
	require.Equal(t, uint64(350), reports[0].Break.PrevSeq)
	require.True(t, reports[1].Intact)

	_, err = runCLI(t, "audit", "verify", data, "--room", "nobody")
	require.ErrorContains(t, err, "has no events")
	_, err = runCLI(t, "audit", "verify", data, "--room", "a.b")
	require.ErrorContains(t, err, "valid room id")
	_, err = runCLI(t, "audit")
	require.ErrorIs(t, err, errUsage)
}

func TestReplayAt(t *testing.T) {
	evs := loggen.Events("timeline", 200, 5, genStart, time.Second)
	for i := range evs {
		evs[i].Seq = uint64(i + 1) // the only room of a fresh stream
	}
	dir := withStore(t, func(js jetstream.JetStream) {
		i := 0
		require.NoError(t, loggen.Write(t.Context(), js, len(evs), func() events.Envelope { i++; return evs[i-1] }))
	})
	data := "--data=" + dir
	type replayJSON struct {
		At     *time.Time        `json:"at"`
		Events []events.Envelope `json:"events"`
		State  roomsapi.RoomView `json:"state"`
	}
	for _, k := range []int{0, 1, 57, 120, 199} {
		at := evs[k].Time
		out, err := runCLI(t, "replay", data, "--room", "timeline", "--at", at.Format(time.RFC3339Nano), "--json")
		require.NoError(t, err)
		var got replayJSON
		require.NoError(t, json.Unmarshal([]byte(out), &got))
		require.True(t, got.At.Equal(at))
		want, err := projections.FoldUntil("timeline", evs, at)
		require.NoError(t, err)
		n := 0
		for n < len(evs) && projections.Before(evs[n], at) {
			n++
		}
		require.Len(t, got.Events, n)
		require.Equal(t, mustJSON(t, roomsapi.ViewOf(want)), mustJSON(t, got.State), "state at event %d", k)

		text, err := runCLI(t, "replay", data, "--room", "timeline", "--at", at.Format(time.RFC3339Nano))
		require.NoError(t, err)
		require.Contains(t, text, "state at "+at.Format(time.RFC3339Nano)+":")
		require.Equal(t, len(got.Events), strings.Count(text, "actor="), "one timeline line per event")
	}
	// A duration ago: long after the generated history, so everything.
	out, err := runCLI(t, "replay", data, "--room", "timeline", "--at", "5m", "--json")
	require.NoError(t, err)
	var all replayJSON
	require.NoError(t, json.Unmarshal([]byte(out), &all))
	require.Len(t, all.Events, len(evs))

	_, err = runCLI(t, "replay", data, "--room", "timeline", "--at", genStart.Add(-time.Hour).Format(time.RFC3339))
	require.ErrorContains(t, err, "no events at or before")
	_, err = runCLI(t, "replay", data, "--room", "timeline", "--at", "yesterday")
	require.ErrorContains(t, err, "neither an RFC 3339 time")
	_, err = runCLI(t, "replay", data, "--room", "nobody")
	require.ErrorContains(t, err, "has no events")
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return string(b)
}

func TestParseInstant(t *testing.T) {
	now := time.Date(2026, 11, 3, 14, 0, 0, 0, time.UTC)
	cases := []struct {
		in   string
		want time.Time
		err  bool
	}{
		{in: "2026-11-03T14:03:00Z", want: time.Date(2026, 11, 3, 14, 3, 0, 0, time.UTC)},
		{in: "2026-11-03T15:03:00.5+01:00", want: time.Date(2026, 11, 3, 14, 3, 0, 5e8, time.UTC)},
		{in: "5m", want: now.Add(-5 * time.Minute)},
		{in: "2h30m", want: now.Add(-150 * time.Minute)},
		{in: "0s", want: now},
		{in: "-5m", err: true},
		{in: "2026-11-03", err: true},
		{in: "", err: true},
	}
	for _, c := range cases {
		got, err := logtools.ParseInstant(c.in, now)
		if c.err {
			require.Error(t, err, c.in)
			continue
		}
		require.NoError(t, err, c.in)
		require.True(t, c.want.Equal(got), "%s: %s", c.in, got)
	}
}

// TestReplayFromSnapshots: `projections snapshot` writes a room's snapshots and verifies them;
// `replay --at` then starts from the nearest one (the same state, a timeline of the events
// after it only), and `--full` prints every event again. `--prune --keep 2` then leaves the
// newest two, and a replay before them folds from the start.
func TestReplayFromSnapshots(t *testing.T) {
	evs := loggen.Events("snapped", 200, 9, genStart, time.Second)
	for i := range evs {
		evs[i].Seq = uint64(i + 1)
	}
	dir := withStore(t, func(js jetstream.JetStream) {
		i := 0
		require.NoError(t, loggen.Write(t.Context(), js, len(evs), func() events.Envelope { i++; return evs[i-1] }))
	})
	data := "--data=" + dir
	out, err := runCLI(t, "projections", "snapshot", data, "--room", "snapped", "--every", "30", "--verify", "--keep", "100")
	require.NoError(t, err)
	require.Contains(t, out, "room snapped: 7 new snapshots")
	require.Contains(t, out, "room snapped: 7 snapshots verified against the log")
	type replayJSON struct {
		FromSnapshot uint64            `json:"from_snapshot"`
		Events       []events.Envelope `json:"events"`
		State        roomsapi.RoomView `json:"state"`
	}
	for _, k := range []int{3, 29, 30, 95, 199} {
		at := evs[k].Time
		want, err := projections.FoldUntil("snapped", evs, at)
		require.NoError(t, err)
		var before []events.Envelope
		for _, e := range evs {
			if projections.Before(e, at) {
				before = append(before, e)
			}
		}
		for _, full := range []bool{false, true} {
			args := []string{"replay", data, "--room", "snapped", "--at", at.Format(time.RFC3339Nano), "--json"}
			if full {
				args = append(args, "--full")
			}
			out, err := runCLI(t, args...)
			require.NoError(t, err)
			var got replayJSON
			require.NoError(t, json.Unmarshal([]byte(out), &got))
			require.Equal(t, mustJSON(t, roomsapi.ViewOf(want)), mustJSON(t, got.State), "state at event %d", k)
			if full {
				require.Zero(t, got.FromSnapshot)
				require.Len(t, got.Events, len(before))
				continue
			}
			nearest := uint64(len(before) / 30 * 30) // every 30 events, and at the head (200)
			if len(before) == len(evs) {
				nearest = uint64(len(evs))
			}
			require.Equal(t, nearest, got.FromSnapshot, "the nearest snapshot before event %d", k)
			require.Len(t, got.Events, len(before)-int(got.FromSnapshot))
		}
	}

	out, err = runCLI(t, "projections", "snapshot", data, "--prune", "--keep", "2")
	require.NoError(t, err)
	require.Contains(t, out, "room snapped: 5 snapshots deleted")
	out, err = runCLI(t, "projections", "snapshot", data, "--room", "snapped", "--verify")
	require.NoError(t, err)
	require.Contains(t, out, "room snapped: 0 new snapshots")
	require.Contains(t, out, "room snapped: 2 snapshots verified against the log")
	at := evs[95].Time
	out, err = runCLI(t, "replay", data, "--room", "snapped", "--at", at.Format(time.RFC3339Nano), "--json")
	require.NoError(t, err)
	var got replayJSON
	require.NoError(t, json.Unmarshal([]byte(out), &got))
	want, err := projections.FoldUntil("snapped", evs, at)
	require.NoError(t, err)
	require.Equal(t, mustJSON(t, roomsapi.ViewOf(want)), mustJSON(t, got.State))
	require.Zero(t, got.FromSnapshot, "the snapshots before event 95 are pruned")
	_, err = runCLI(t, "projections", "snapshot", data, "--prune", "--keep", "0")
	require.ErrorContains(t, err, "keep at least 1")
}
