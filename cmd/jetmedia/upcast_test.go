package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/egress/webhook"
	"github.com/jetmedia/jetmedia/events"
	"github.com/jetmedia/jetmedia/pipeline/eventlog"
	"github.com/jetmedia/jetmedia/projections"
	"github.com/jetmedia/jetmedia/projections/roomsapi"
	"github.com/jetmedia/jetmedia/schemas"
)

// hookLog records what each webhook path received, in arrival order.
type hookLog struct {
	mu  sync.Mutex
	got map[string][]events.Envelope
}

func (h *hookLog) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	e, err := events.Decode(b)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, seen := range h.got[r.URL.Path] {
		if seen.ID == e.ID {
			return // at least once: a redelivery
		}
	}
	h.got[r.URL.Path] = append(h.got[r.URL.Path], e)
}

func (h *hookLog) types(path string) []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []string
	for _, e := range h.got[path] {
		out = append(out, e.Type)
	}
	return out
}

// TestPeerLeftV1StillReplays is the schema-evolution check: a node's log holds peer.left.v1
// events, written the way nodes wrote them before v2 (a v1 payload through the appender), mixed
// with v2 ones, as during a rolling upgrade. Everything that reads the log handles the mix: the
// live KV projection and its rebuild, state at an instant (HTTP and replay), the events API's
// type filter, the analytics read model, audit verify, schema validation and webhooks filtered
// by type with and without version.
func TestPeerLeftV1StillReplays(t *testing.T) {
	hooks := &hookLog{got: map[string][]events.Envelope{}}
	recv := httptest.NewServer(hooks)
	defer recv.Close()

	cfg := cliNodeConfig(t, "upgraded")
	cfg.Webhooks.Endpoints = []webhook.Endpoint{
		{URL: recv.URL + "/any", Types: []string{"peer.left"}},
		{URL: recv.URL + "/v1", Types: []string{events.TypePeerLeftV1}},
		{URL: recv.URL + "/v2", Types: []string{events.TypePeerLeft}},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	node := startCLINode(t, ctx, cfg) // dev mode: the history API needs no token

	const room = "mixed"
	t0 := time.Date(2026, 11, 3, 9, 0, 0, 0, time.UTC)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	oldNode := eventlog.NewAppender(node.JetStream(), "old")
	newNode := eventlog.NewAppender(node.JetStream(), "upgraded")
	write := func(ap *eventlog.Appender, nodeName string, s float64, actor string, p events.Payload) {
		t.Helper()
		e, err := events.New(events.Meta{Room: room, Actor: actor, Node: nodeName, Time: at(s)}, p)
		require.NoError(t, err)
		_, err = ap.Append(ctx, e)
		require.NoError(t, err)
	}
	joined := func(peer, identity string) events.PeerJoined {
		return events.PeerJoined{Peer: peer, Transport: events.TransportWHIP, Role: "publisher", Node: "old", Identity: identity}
	}
	write(oldNode, "old", 0, "system", events.RoomCreated{Node: "old"})
	write(oldNode, "old", 1, "a1", joined("a1", "alice"))
	write(oldNode, "old", 2, "b1", joined("b1", "bob"))
	write(oldNode, "old", 3, "a1", events.TrackPublished{Peer: "a1", Track: "ta", Kind: "video", Codec: "video/VP8", ClockRate: 90000, Layers: []string{"0"}})
	// Before the upgrade: a v1 leave that does not record the track's end (the fold must drop
	// the track with its peer).
	write(oldNode, "old", 4, "a1", events.PeerLeftV1{Peer: "a1", Reason: "closed"})
	write(newNode, "upgraded", 5, "c1", joined("c1", "carol"))
	write(newNode, "upgraded", 6, "b1", events.NewPeerLeft("b1", "disconnected"))
	// A node not yet upgraded keeps writing v1 after the first v2.
	write(oldNode, "old", 7, "c1", events.PeerLeftV1{Peer: "c1", Reason: "timeout"})
	write(newNode, "upgraded", 8, "d1", joined("d1", "dave"))

	require.NoError(t, node.WaitProjected(ctx))
	require.NoError(t, node.WaitReadModels(ctx))

	// The stored types are as written: nothing rewrites the log.
	var stored []string
	require.NoError(t, eventlog.Read(ctx, node.JetStream(), eventlog.ReadOptions{Filter: eventlog.RoomEventsFilter(room)}, func(e events.Envelope) error {
		stored = append(stored, e.Type)
		return nil
	}))
	require.Equal(t, []string{events.TypeRoomCreated, events.TypePeerJoined, events.TypePeerJoined,
		events.TypeTrackPublished, "peer.left.v1", events.TypePeerJoined, "peer.left.v2", "peer.left.v1",
		events.TypePeerJoined}, stored)

	// Every stored event validates against the schema of its own version.
	v, err := schemas.New()
	require.NoError(t, err)
	require.NoError(t, eventlog.ReadStored(ctx, node.JetStream(), eventlog.ReadOptions{Filter: eventlog.RoomEventsFilter(room)}, func(s eventlog.StoredEvent) error {
		return v.ValidateEvent(s.Data)
	}))

	// The live projection folded both versions: only d1 is left.
	live, err := projections.LoadRoom(ctx, node.Rooms(), room)
	require.NoError(t, err)
	require.Equal(t, []string{"d1"}, live.PeerIDs())
	require.Empty(t, live.Tracks)

	// State at instants between the leaves, over HTTP.
	stateAt := func(s float64) roomsapi.RoomView {
		t.Helper()
		var v roomsapi.RoomView
		getJSON(t, node.HTTPURL()+"/v1/rooms/"+room+"/state?at="+at(s).Format(time.RFC3339Nano), &v)
		return v
	}
	peersOf := func(v roomsapi.RoomView) []string {
		out := []string{}
		for _, p := range v.Peers {
			out = append(out, p.Peer)
		}
		return out
	}
	require.Equal(t, []string{"a1", "b1"}, peersOf(stateAt(3.5)))
	require.Len(t, stateAt(3.5).Tracks, 1)
	after1 := stateAt(4.5) // after a v1 leave
	require.Equal(t, []string{"b1"}, peersOf(after1))
	require.Empty(t, after1.Tracks, "a v1 leave takes the peer's track with it")
	require.Equal(t, []string{"c1"}, peersOf(stateAt(6.5))) // after a v2 leave
	require.Equal(t, []string{}, peersOf(stateAt(7.5)))     // a v1 after a v2

	// The events API's type filter: a bare type matches both versions.
	require.Equal(t, []string{"peer.left.v1", "peer.left.v2", "peer.left.v1"}, eventTypes(t, node.HTTPURL(), room, "peer.left"))
	require.Equal(t, []string{"peer.left.v1", "peer.left.v1"}, eventTypes(t, node.HTTPURL(), room, "peer.left.v1"))
	require.Equal(t, []string{"peer.left.v2"}, eventTypes(t, node.HTTPURL(), room, "peer.left.v2"))

	// The analytics read model ended all three sessions: 3 s (a1) + 4 s (b1) + 2 s (c1).
	a, ok, err := projections.LoadAnalytics(node.ReadModelsDB(), room)
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, int64(9000), a.ParticipantMs)
	require.Equal(t, 3, a.Hours[t0.Format(time.RFC3339)].Leaves)
	require.Equal(t, []string{"d1"}, keysOf(a.Live))

	// Webhooks: "peer.left" gets both versions in log order; a versioned filter gets its own.
	require.Eventually(t, func() bool {
		return len(hooks.types("/any")) == 3 && len(hooks.types("/v1")) == 2 && len(hooks.types("/v2")) == 1
	}, 30*time.Second, 20*time.Millisecond)
	require.Equal(t, []string{"peer.left.v1", "peer.left.v2", "peer.left.v1"}, hooks.types("/any"))
	require.Equal(t, []string{"peer.left.v1", "peer.left.v1"}, hooks.types("/v1"))
	require.Equal(t, []string{"peer.left.v2"}, hooks.types("/v2"))
	for _, e := range hooks.got["/any"] {
		p, err := e.Payload()
		require.NoError(t, err)
		left, ok := p.(events.PeerLeft)
		require.True(t, ok, "a receiver using the events package gets the current type for either version: %T", p)
		require.NotEmpty(t, left.Cause.By)
	}

	// The CLI, through the running node: projections rebuild folds the mix into a bucket
	// equal to the live one; replay and audit verify read it.
	data := "--data=" + cfg.DataDir
	out, err := runCLI(t, "projections", "rebuild", data)
	require.NoError(t, err)
	require.Contains(t, out, "identical to the live bucket")

	out, err = runCLI(t, "replay", data, "--room", room, "--at", at(4.5).Format(time.RFC3339Nano), "--json")
	require.NoError(t, err)
	var rep struct {
		Events []events.Envelope `json:"events"`
		State  roomsapi.RoomView `json:"state"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &rep))
	require.Len(t, rep.Events, 5)
	require.Equal(t, []string{"b1"}, peersOf(rep.State))

	out, err = runCLI(t, "replay", data, "--room", room)
	require.NoError(t, err)
	require.Equal(t, 2, strings.Count(out, " peer.left.v1 "), out)
	require.Equal(t, 1, strings.Count(out, " peer.left.v2 "), out)
	_, final, ok := strings.Cut(out, "state after the last event")
	require.True(t, ok, out)
	require.Contains(t, final, " d1 ")
	require.NotContains(t, final, " c1 ")

	out, err = runCLI(t, "audit", "verify", data, "--room", room)
	require.NoError(t, err)
	require.Contains(t, out, fmt.Sprintf("room %s: intact: %d events", room, len(stored)))
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s: %s", url, b)
	require.NoError(t, json.Unmarshal(b, v), "%s", b)
}

func eventTypes(t *testing.T, base, room, filter string) []string {
	t.Helper()
	resp, err := http.Get(base + "/v1/rooms/" + room + "/events?type=" + filter)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", b)
	var out []string
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		e, err := events.Decode([]byte(line))
		require.NoError(t, err, "%s", line)
		out = append(out, e.Type)
	}
	return out
}

func keysOf[V any](m map[string]V) []string {
	out := []string{}
	for k := range m {
		out = append(out, k)
	}
	return out
}
