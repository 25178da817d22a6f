package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/cmd/jetmedia/app"
	"github.com/jetmedia/jetmedia/events"
	"github.com/jetmedia/jetmedia/ingress/signal"
	"github.com/jetmedia/jetmedia/ingress/signal/client"
	"github.com/jetmedia/jetmedia/pipeline/auth"
	"github.com/jetmedia/jetmedia/pipeline/eventlog"
	"github.com/jetmedia/jetmedia/schemas"
	"github.com/jetmedia/jetmedia/tests/rtcclient"
)

// serverTrace keeps the server's signalling messages a Go SDK client saw.
type serverTrace struct {
	mu   sync.Mutex
	msgs [][]byte
}

func (s *serverTrace) trace(fromServer bool, raw []byte) {
	if fromServer {
		s.mu.Lock()
		s.msgs = append(s.msgs, append([]byte(nil), raw...))
		s.mu.Unlock()
	}
}

// types validates every message against schemas/signal and returns their types in order.
func (s *serverTrace) types(t *testing.T) []string {
	t.Helper()
	v, err := schemas.NewSignal()
	require.NoError(t, err)
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.msgs))
	for _, raw := range s.msgs {
		require.NoError(t, v.Validate(schemas.FromServer, raw), "%s", raw)
		var m signal.ServerMessage
		require.NoError(t, json.Unmarshal(raw, &m))
		out = append(out, m.Type)
	}
	return out
}

// joinsOf returns the peer.joined payloads of identity in a room's log. A read that times out
// (a consumer on a replicated stream can be slow to come up on a loaded machine) is retried.
func joinsOf(t *testing.T, n *app.Node, room, identity string) []events.PeerJoined {
	t.Helper()
	var out []events.PeerJoined
	var err error
	for range 3 {
		out = nil
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err = eventlog.Read(ctx, n.JetStream(), eventlog.ReadOptions{Filter: eventlog.RoomEventsFilter(room)}, func(e events.Envelope) error {
			if e.Type != events.TypePeerJoined {
				return nil
			}
			p, err := e.Payload()
			if err != nil {
				return err
			}
			if pj := p.(events.PeerJoined); pj.Identity == identity {
				out = append(out, pj)
			}
			return nil
		})
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			break
		}
	}
	require.NoError(t, err)
	return out
}

func sdkToken(t *testing.T, room, identity string) string {
	return token(t, room, identity, auth.Publish, auth.Subscribe, auth.Data)
}

// TestRTCPlacementRedirects: three routed nodes; a admits one session (--max-sessions 1) and
// holds a WHIP publisher. A Go SDK client that dials a's /rtc gets a redirect message and
// ends up joined on b or c (the peer.joined event's node), receives the publisher's media
// there, and resumes there after its socket drops; the log holds one join of it, none by a.
// c, with placement off, at its limit: a join there gets error full and nothing is recorded.
func TestRTCPlacementRedirects(t *testing.T) {
	nodes := startRouted(t, func(i int, cfg *app.Config) {
		switch i {
		case 0:
			cfg.MaxSessions = 1
		case 2:
			cfg.MaxSessions, cfg.Placement = 1, false
		}
	}, "a", "b", "c")
	a, b, c := nodes[0], nodes[1], nodes[2]
	ctx := ctxT(t, 2*time.Minute)
	api := clientAPI(t)
	room := newRoom("rtcplaced")
	pub, err := rtcclient.Publish(ctx, api, a.HTTPURL(), room, asPublisher(t, room))
	require.NoError(t, err)
	defer pub.Close(true)
	waitTracks(t, b, room, 2)
	pubJoins := joinsOf(t, a, room, "test-publisher")
	require.Len(t, pubJoins, 1)
	require.Equal(t, "a", pubJoins[0].Node, "the publisher is a's one session")

	// c, placement off: one session fills it; the next join is refused with full. (First, so
	// that the client below cannot have filled c: a placed join that finds c full is refused
	// too, and retried.)
	first, err := client.Join(ctx, c.HTTPURL()+"/rtc", sdkToken(t, room, "on-c"), client.Options{API: api})
	require.NoError(t, err)
	defer first.Close()
	refused := &serverTrace{}
	_, err = client.Join(ctx, c.HTTPURL()+"/rtc", sdkToken(t, room, "refused"), client.Options{API: api, Trace: refused.trace})
	var se *client.Error
	require.True(t, errors.As(err, &se), "%v", err)
	require.Equal(t, signal.CodeFull, se.Code)
	require.Equal(t, []string{signal.TypeError}, refused.types(t))
	require.Equal(t, "c", joinsOf(t, c, room, "on-c")[0].Node)
	require.Empty(t, joinsOf(t, c, room, "refused"), "a refused join records nothing")

	// a's leases may not show b and c yet (or, on a loaded machine, show them lapsed for a
	// moment): a full a then answers error full, which a client retries.
	tr := &serverTrace{}
	var r *client.Room
	var took time.Duration
	require.Eventually(t, func() bool {
		start := time.Now()
		r, err = client.Join(ctx, a.HTTPURL()+"/rtc", sdkToken(t, room, "placed"), client.Options{API: api, Trace: tr.trace})
		took = time.Since(start)
		var se *client.Error
		if errors.As(err, &se) && se.Code == signal.CodeFull {
			return false
		}
		require.NoError(t, err)
		return true
	}, 20*time.Second, 500*time.Millisecond)
	defer r.Close()
	var got atomic.Int64
	r.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		buf := make([]byte, 1500)
		for {
			if _, _, err := tr.Read(buf); err != nil {
				return
			}
			got.Add(1)
		}
	})
	types := tr.types(t)
	require.Contains(t, types, signal.TypeRedirect)
	require.Equal(t, signal.TypeJoined, types[slices.Index(types, signal.TypeRedirect)+1], "the redirect, then joined at its URL: %v", types)

	joins := joinsOf(t, a, room, "placed")
	require.Len(t, joins, 1, "one join recorded, by the node it was sent to")
	require.Contains(t, []string{"b", "c"}, joins[0].Node)
	require.Equal(t, r.Self.Peer, joins[0].Peer)
	require.Eventually(t, func() bool { return got.Load() > 30 }, 20*time.Second, 20*time.Millisecond, "media on %s", joins[0].Node)
	// For the docs, not a bound: a join through a redirect against one straight at the node.
	start := time.Now()
	direct, err := client.Join(ctx, b.HTTPURL()+"/rtc", sdkToken(t, room, "direct"), client.Options{API: api})
	require.NoError(t, err)
	t.Logf("join at a, redirected to %s: %v; join straight at b: %v", joins[0].Node, took, time.Since(start))
	require.NoError(t, direct.Leave())

	// A query too long to carry in a redirect is refused, not sent on (a still full, and it
	// knows b now).
	_, err = client.Join(ctx, a.HTTPURL()+"/rtc?pad="+strings.Repeat("x", signal.MaxRedirectURL), sdkToken(t, room, "padded"), client.Options{API: api})
	var bad *client.Error
	require.True(t, errors.As(err, &bad), "%v", err)
	require.Equal(t, signal.CodeBadRequest, bad.Code)

	// A resume goes to the node that took the join (a would not know the session).
	r.DropConnection(0)
	deadline := time.After(15 * time.Second)
	for resumed := false; !resumed; {
		select {
		case e, ok := <-r.Events():
			require.True(t, ok, "room ended instead of resuming")
			require.NotEqual(t, client.ErrorEvent, e.Type, "%s: %s", e.Code, e.Message)
			resumed = e.Type == client.Reconnected
		case <-deadline:
			t.Fatal("no reconnected event")
		}
	}
	require.Len(t, joinsOf(t, a, room, "placed"), 1, "a resume records no join")
	require.Empty(t, joinsOf(t, a, room, "padded"))

}
