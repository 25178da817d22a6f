package tests

import (
	"context"
	"crypto/rand"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/pion/webrtc/v4"
	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/cmd/jetmedia/app"
	"github.com/jetmedia/jetmedia/events"
	"github.com/jetmedia/jetmedia/pipeline/auth"
	"github.com/jetmedia/jetmedia/pipeline/eventlog"
	"github.com/jetmedia/jetmedia/projections"
	"github.com/jetmedia/jetmedia/schemas"
	"github.com/jetmedia/jetmedia/tests/rtcclient"
)

// testLogger is quiet unless JETMEDIA_TEST_LOG=1.
func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("JETMEDIA_TEST_LOG") != "1" {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("test", t.Name())
}

// nodeConfig is a node on loopback with random ports and a fresh data dir. With
// JETMEDIA_TEST_FAST_INGEST=1 every node takes its publishers' RTP on the fast ingest path
// (--fast-ingest), with JETMEDIA_TEST_FAST_EGRESS=1 it sends WHEP viewers' RTP on the fast
// egress path (--fast-egress), to run the suite through them.
func nodeConfig(t testing.TB, name string) app.Config {
	cfg := app.Defaults()
	cfg.Name = name
	cfg.DataDir = t.TempDir()
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.UDPPort = 0
	cfg.Logger = testLogger(t)
	cfg.AuthKeys = []auth.Key{testKey}
	cfg.FastIngest = os.Getenv("JETMEDIA_TEST_FAST_INGEST") == "1"
	cfg.FastEgress = os.Getenv("JETMEDIA_TEST_FAST_EGRESS") == "1"
	return cfg
}

// testKey signs the tokens of the tests' nodes (nodeConfig configures it, so no node of a
// test runs in dev mode unless the test says so).
var testKey = auth.Key{ID: "test", Secret: []byte("jetmedia-tests-secret-0123456789abcdef")}

// Identities of the tokens asPublisher and asViewer give.
const (
	publisherIdentity = "test-publisher"
	viewerIdentity    = "test-viewer"
)

// token is a token for identity in room with grants, valid for an hour, signed with testKey.
func token(t testing.TB, room, identity string, grants ...auth.Grant) string {
	t.Helper()
	k, err := auth.NewKeyring(testKey)
	require.NoError(t, err)
	tok, err := k.Sign(auth.NewClaims(room, identity, grants, time.Now(), time.Hour))
	require.NoError(t, err)
	return tok
}

// asPublisher and asViewer are rtcclient options carrying a publish or subscribe token for
// room.
func asPublisher(t testing.TB, room string) rtcclient.Option {
	return rtcclient.WithToken(token(t, room, publisherIdentity, auth.Publish))
}

func asViewer(t testing.TB, room string) rtcclient.Option {
	return rtcclient.WithToken(token(t, room, viewerIdentity, auth.Subscribe))
}

func startNode(t testing.TB, cfg app.Config) *app.Node {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	n, err := app.Start(ctx, cfg)
	require.NoError(t, err)
	t.Cleanup(func() {
		if cfg.FastIngest {
			t.Logf("node %s fast ingest: %+v", cfg.Name, n.FastIngest())
		}
		_ = n.Close()
	})
	return n
}

func newRoom(prefix string) string {
	return prefix + "-" + strings.ToLower(rand.Text()[:8])
}

func clientAPI(t testing.TB) *webrtc.API {
	api, err := rtcclient.NewAPI()
	require.NoError(t, err)
	return api
}

func ctxT(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// roomEvents reads a room's whole log.
func roomEvents(t testing.TB, js jetstream.JetStream, room string) []events.Envelope {
	t.Helper()
	var out []events.Envelope
	err := eventlog.Read(ctxT(t, 10*time.Second), js, eventlog.ReadOptions{Filter: eventlog.RoomEventsFilter(room)}, func(e events.Envelope) error {
		out = append(out, e)
		return nil
	})
	require.NoError(t, err)
	return out
}

// requireSchemaValid validates every stored event of the system against its JSON Schema; an
// event type with no schema fails.
func requireSchemaValid(t testing.TB, js jetstream.JetStream) int {
	t.Helper()
	v, err := schemas.New()
	require.NoError(t, err)
	n := 0
	err = eventlog.Read(ctxT(t, 20*time.Second), js, eventlog.ReadOptions{Filter: eventlog.EventsSubjects}, func(e events.Envelope) error {
		raw, err := events.Encode(e)
		require.NoError(t, err)
		require.NoError(t, v.ValidateEvent(raw), "event %d %s", e.Seq, raw)
		n++
		return nil
	})
	require.NoError(t, err)
	return n
}

// publishTracks publishes the test client's audio and video to room and waits until both
// tracks are in the rooms bucket; the caller closes the publisher.
func publishTracks(t testing.TB, ctx context.Context, api *webrtc.API, node *app.Node, room string) *rtcclient.Publisher {
	t.Helper()
	pub, err := rtcclient.Publish(ctx, api, node.HTTPURL(), room, asPublisher(t, room))
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		r, err := projections.LoadRoom(ctx, node.Rooms(), room)
		return err == nil && len(r.Tracks) == 2
	}, 10*time.Second, 20*time.Millisecond)
	return pub
}
