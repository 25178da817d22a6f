package events_test

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/events"
)

// raw is an event as a node wrote it to the log, before and after peer.left.v2.
func raw(t *testing.T, typ, data string) []byte {
	t.Helper()
	b, err := json.Marshal(map[string]any{
		"specversion": "1.0", "id": "e1", "type": typ, "source": "jetmedia/n0", "subject": "r1",
		"time": "2025-06-01T10:00:00Z", "room": "r1", "actor": "p1", "node": "n0",
		"data": json.RawMessage(data),
	})
	require.NoError(t, err)
	return b
}

// A v1 peer.left from an older node decodes to the current PeerLeft, with the cause derived
// from its reason; a v2 one keeps the cause it was written with.
func TestPeerLeftUpcast(t *testing.T) {
	cases := []struct {
		name string
		typ  string
		data string
		want events.PeerLeft
	}{
		{"v1 closed", events.TypePeerLeftV1, `{"peer":"p1","reason":"closed"}`,
			events.PeerLeft{Peer: "p1", Reason: "closed", Cause: events.LeaveCause{By: events.ByClient}}},
		{"v1 disconnected", events.TypePeerLeftV1, `{"peer":"p1","reason":"disconnected"}`,
			events.PeerLeft{Peer: "p1", Reason: "disconnected", Cause: events.LeaveCause{By: events.ByNetwork}}},
		{"v1 timeout", events.TypePeerLeftV1, `{"peer":"p1","reason":"timeout"}`,
			events.PeerLeft{Peer: "p1", Reason: "timeout", Cause: events.LeaveCause{By: events.ByNetwork}}},
		{"v1 shutdown", events.TypePeerLeftV1, `{"peer":"p1","reason":"shutdown"}`,
			events.PeerLeft{Peer: "p1", Reason: "shutdown", Cause: events.LeaveCause{By: events.ByServer}}},
		{"v1 kicked", events.TypePeerLeftV1, `{"peer":"p1","reason":"kicked"}`,
			events.PeerLeft{Peer: "p1", Reason: "kicked", Cause: events.LeaveCause{By: events.ByOperator}}},
		// The v1 schema forbids it, but a decoder must not invent a side it cannot know.
		{"v1 unknown reason", events.TypePeerLeftV1, `{"peer":"p1","reason":"bored"}`,
			events.PeerLeft{Peer: "p1", Reason: "bored"}},
		{"v2 as written", events.TypePeerLeft, `{"peer":"p1","reason":"disconnected","cause":{"by":"server","detail":"drained"}}`,
			events.PeerLeft{Peer: "p1", Reason: "disconnected", Cause: events.LeaveCause{By: events.ByServer, Detail: "drained"}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e, err := events.Decode(raw(t, c.typ, c.data))
			require.NoError(t, err)
			require.Equal(t, c.typ, e.Type, "decoding keeps the stored type; only the payload is upcast")
			p, err := e.Payload()
			require.NoError(t, err)
			require.Equal(t, c.want, p)
		})
	}
	// Both versions ride the same subject, so a consumer of ev.<room>.peer_left gets both.
	require.Equal(t, events.Kind(events.TypePeerLeftV1), events.Kind(events.TypePeerLeft))
}

func TestPeerLeftV1BadData(t *testing.T) {
	e, err := events.Decode(raw(t, events.TypePeerLeftV1, `{"peer":7}`))
	require.NoError(t, err)
	_, err = e.Payload()
	require.ErrorIs(t, err, events.ErrInvalid)
}

// Writers emit v2 with the cause filled in.
func TestNewPeerLeftWritesV2(t *testing.T) {
	e, err := events.New(events.Meta{Room: "r1", Node: "n1"}, events.NewPeerLeft("p1", "closed"))
	require.NoError(t, err)
	require.Equal(t, "peer.left.v2", e.Type)
	require.JSONEq(t, `{"peer":"p1","reason":"closed","cause":{"by":"client"}}`, string(e.Data))
}
