package main

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/cmd/jetmedia/app"
	"github.com/jetmedia/jetmedia/events"
	"github.com/jetmedia/jetmedia/pipeline/auth"
	"github.com/jetmedia/jetmedia/pipeline/eventlog"
	"github.com/jetmedia/jetmedia/projections"
)

// TestAuditWhoAndAnalytics runs a node, appends the life of two rooms where alice and bob
// publish and watch, and reads the read models: over HTTP while the node runs (the CLI refuses
// the busy directory and says to use --url), and from the data directory once it stopped.
func TestAuditWhoAndAnalytics(t *testing.T) {
	cfg := app.Defaults()
	cfg.Name = "rm"
	cfg.DataDir = t.TempDir()
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.UDPPort = 0
	key := auth.GenerateKey("k1")
	cfg.AuthKeys = []auth.Key{key}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	node, err := app.Start(ctx, cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = node.Close() })

	t0 := time.Date(2026, 11, 3, 14, 0, 0, 0, time.UTC)
	appender := eventlog.NewAppender(node.JetStream(), "rm")
	add := func(room, who string, min int, p events.Payload) {
		e, err := events.New(events.Meta{Room: room, Actor: who, Node: "rm", Time: t0.Add(time.Duration(min) * time.Minute)}, p)
		require.NoError(t, err)
		_, err = appender.Append(ctx, e)
		require.NoError(t, err)
	}
	add("r1", "alice", 0, events.PeerJoined{Peer: "a1", Transport: "whip", Role: "publisher", Node: "rm", Identity: "alice"})
	add("r1", "alice", 0, events.TrackPublished{Peer: "a1", Track: "v", Kind: "video", Codec: "video/VP8", ClockRate: 90000, Layers: []string{"0"}})
	add("r1", "bob", 5, events.PeerJoined{Peer: "b1", Transport: "whep", Role: "viewer", Node: "rm", Identity: "bob"})
	add("r2", "alice", 10, events.PeerJoined{Peer: "a2", Transport: "whep", Role: "viewer", Node: "rm", Identity: "alice"})
	add("r1", "bob", 15, events.PeerLeft{Peer: "b1", Reason: "closed"})
	add("r1", "alice", 20, events.PeerLeft{Peer: "a1", Reason: "closed"})
	add("r2", "alice", 70, events.PeerLeft{Peer: "a2", Reason: "closed"})
	wctx, wcancel := context.WithTimeout(ctx, 20*time.Second)
	require.NoError(t, node.WaitReadModels(wctx))
	wcancel()

	admin, err := node.Keyring().Sign(auth.NewClaims(auth.AnyRoom, "ops", []auth.Grant{auth.Admin}, time.Now(), time.Hour))
	require.NoError(t, err)
	get := func(path, token string) (int, []byte) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, node.HTTPURL()+path, nil)
		require.NoError(t, err)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer func() { _ = resp.Body.Close() }()
		b, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return resp.StatusCode, b
	}
	code, _ := get("/v1/audit/who?identity=alice", "")
	require.Equal(t, http.StatusUnauthorized, code)
	code, body := get("/v1/audit/who?identity=alice&bogus=1", admin)
	require.Equal(t, http.StatusBadRequest, code, string(body))
	code, body = get("/v1/audit/who?identity=alice&from=2026-11-03T14:05:00Z", admin)
	require.Equal(t, http.StatusOK, code, string(body))
	var refs []projections.AuditRef
	require.NoError(t, json.Unmarshal(body, &refs))
	require.Len(t, refs, 3)
	require.Equal(t, []string{"r2", "r1", "r2"}, []string{refs[0].Room, refs[1].Room, refs[2].Room})
	require.Equal(t, events.TypePeerJoined, refs[0].Type)
	require.Equal(t, "a2", refs[0].Peer)

	code, body = get("/v1/analytics/rooms/r1", admin)
	require.Equal(t, http.StatusOK, code, string(body))
	var fig projections.RoomFigures
	require.NoError(t, json.Unmarshal(body, &fig))
	require.Equal(t, 30.0, fig.ParticipantMinutes) // alice 20 + bob 10
	require.Equal(t, map[string]float64{"video": 20}, fig.PublishMinutes)
	require.Equal(t, 2, fig.PeakConcurrent)
	require.Equal(t, []projections.HourFigures{{Hour: "2026-11-03T14:00:00Z", Joins: 2, Leaves: 2}}, fig.Hours)
	code, _ = get("/v1/analytics/rooms/nope", admin)
	require.Equal(t, http.StatusNotFound, code)

	// The anchor a cron job fetches: the chain heads, the same the CLI computes.
	code, _ = get("/v1/audit/anchor", "")
	require.Equal(t, http.StatusUnauthorized, code)
	code, body = get("/v1/audit/anchor", admin)
	require.Equal(t, http.StatusOK, code, string(body))
	anchor, err := projections.ParseAnchor(body)
	require.NoError(t, err)
	require.Equal(t, "rm", anchor.Node)
	require.Len(t, anchor.Rooms, 2)
	require.Equal(t, "r1", anchor.Rooms[0].Room)
	chains, err := projections.VerifyChains(ctx, node.JetStream(), "", nil)
	require.NoError(t, err)
	want, err := projections.NewAnchor(chains, "rm", anchor.Time)
	require.NoError(t, err)
	require.Equal(t, want, anchor)
	require.GreaterOrEqual(t, anchor.Rooms[0].Events, 5)
	code, body = get("/v1/audit/anchor?room=r2", admin)
	require.Equal(t, http.StatusOK, code, string(body))
	one, err := projections.ParseAnchor(body)
	require.NoError(t, err)
	require.Equal(t, anchor.Rooms[1:], one.Rooms)
	code, _ = get("/v1/audit/anchor?room=nope", admin)
	require.Equal(t, http.StatusNotFound, code)

	// The running server holds the index: the CLI says how to ask it, and --url does.
	data := "--data=" + cfg.DataDir
	_, err = runCLI(t, "audit", "who", data, "--identity", "alice")
	require.ErrorIs(t, err, app.ErrDataDirBusy)
	require.Contains(t, err.Error(), "--url")
	out, err := runCLI(t, "audit", "who", "--url", node.HTTPURL(), "--token", admin, "--identity", "bob")
	require.NoError(t, err)
	require.Contains(t, out, "2 events by bob")

	require.NoError(t, node.Close())
	out, err = runCLI(t, "audit", "who", data, "--identity", "alice", "--to", "2026-11-03T14:10:00Z", "--json")
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal([]byte(out), &refs))
	require.Len(t, refs, 3) // joined r1, published, joined r2
	out, err = runCLI(t, "audit", "who", data, "--identity", "alice")
	require.NoError(t, err)
	require.Contains(t, out, "5 events by alice")

	out, err = runCLI(t, "audit", "export", data, "--room", "r1", "--format", "csv")
	require.NoError(t, err)
	rows, err := csv.NewReader(strings.NewReader(out)).ReadAll()
	require.NoError(t, err)
	require.Len(t, rows, 1+6) // header, room.created and five events
	require.Equal(t, "seq", rows[0][0])
	require.Equal(t, events.TypeRoomCreated, rows[1][2])
	require.Equal(t, "bob", rows[4][4])
	out, err = runCLI(t, "audit", "export", data, "--room", "r1")
	require.NoError(t, err)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	require.Len(t, lines, 6)
	for i := 1; i < len(lines); i++ { // exactly as stored: each line's hash is the next prevhash
		e, err := events.Decode([]byte(lines[i]))
		require.NoError(t, err)
		require.Equal(t, events.Hash([]byte(lines[i-1])), e.PrevHash)
	}
}
