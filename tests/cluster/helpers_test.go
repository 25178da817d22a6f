// Package cluster holds the multi-node tests of issue 13 (gateways, leaf edges, authenticated
// links): heavy, so in their own package that CI runs beside the rest.
package cluster

import (
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/pion/webrtc/v4"
	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/cmd/jetmedia/app"
	"github.com/jetmedia/jetmedia/events"
	"github.com/jetmedia/jetmedia/pipeline/auth"
	"github.com/jetmedia/jetmedia/pipeline/eventlog"
	"github.com/jetmedia/jetmedia/tests/rtcclient"
	"github.com/jetmedia/jetmedia/tests/testports"
)

// testKey signs the tokens of every node of a test's system; the links between the nodes
// authenticate with a password derived from it.
var testKey = auth.Key{ID: "test", Secret: []byte("jetmedia-cluster-tests-secret-0123456789")}

func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("JETMEDIA_TEST_LOG") != "1" {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("test", t.Name())
}

// nodeConfig is a node on loopback with random ports and a fresh data dir.
func nodeConfig(t testing.TB, name string) app.Config {
	cfg := app.Defaults()
	cfg.Name = name
	cfg.DataDir = t.TempDir()
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.UDPHost = "127.0.0.1"
	cfg.UDPPort = 0
	cfg.Logger = testLogger(t).With("node", name)
	cfg.AuthKeys = []auth.Key{testKey}
	return cfg
}

// startNodes starts nodes together (a JetStream meta group needs its peers to elect a leader)
// and stops them at the end of the test.
func startNodes(t testing.TB, cfgs ...app.Config) []*app.Node {
	t.Helper()
	nodes := make([]*app.Node, len(cfgs))
	errs := make([]error, len(cfgs))
	var wg sync.WaitGroup
	for i := range cfgs {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()
			nodes[i], errs[i] = app.Start(ctx, cfgs[i])
		})
	}
	wg.Wait()
	for i := range nodes {
		if nodes[i] != nil {
			t.Cleanup(func() { _ = nodes[i].Close() })
		}
	}
	for i := range nodes {
		require.NoError(t, errs[i], "start %s", cfgs[i].Name)
	}
	return nodes
}

func token(t testing.TB, room, identity string, grants ...auth.Grant) string {
	t.Helper()
	k, err := auth.NewKeyring(testKey)
	require.NoError(t, err)
	tok, err := k.Sign(auth.NewClaims(room, identity, grants, time.Now(), time.Hour))
	require.NoError(t, err)
	return tok
}

func asPublisher(t testing.TB, room string) rtcclient.Option {
	return rtcclient.WithToken(token(t, room, "test-publisher", auth.Publish))
}

func asViewer(t testing.TB, room string) rtcclient.Option {
	return rtcclient.WithToken(token(t, room, "test-viewer", auth.Subscribe))
}

func newRoom(prefix string) string { return prefix + "-" + strings.ToLower(rand.Text()[:8]) }

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

// freePorts reserves n loopback ports for this test (see testports: asking the kernel for :0
// and closing races with parallel test packages).
func freePorts(t testing.TB, n int) []int {
	return testports.Reserve(t, n)
}

// writeFile writes a nats-server configuration file into the test's temp dir.
func writeFile(t testing.TB, name, format string, args ...any) string {
	p := filepath.Join(t.TempDir(), name)
	require.NoError(t, os.WriteFile(p, fmt.Appendf(nil, format, args...), 0o600))
	return p
}

// roomEvents reads a room's whole log through js. A read is tried three times: right after a
// kill, a read through a node of the far region once got no message within 10 s (the ordered
// consumer behind it was placed while the stream's leader moved).
func roomEvents(t testing.TB, js jetstream.JetStream, room string) []events.Envelope {
	t.Helper()
	var err error
	for range 3 {
		var out []events.Envelope
		err = eventlog.Read(ctxT(t, 15*time.Second), js, eventlog.ReadOptions{Filter: eventlog.RoomEventsFilter(room)}, func(e events.Envelope) error {
			out = append(out, e)
			return nil
		})
		if err == nil {
			return out
		}
		t.Logf("reading room %s: %v (trying again)", room, err)
	}
	require.NoError(t, err)
	return nil
}

func ids(evs []events.Envelope) []string {
	out := make([]string, len(evs))
	for i, e := range evs {
		out[i] = e.ID
	}
	return out
}
