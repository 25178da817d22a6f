package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/cmd/jetmedia/app"
	"github.com/jetmedia/jetmedia/events"
	"github.com/jetmedia/jetmedia/pipeline/auth"
	"github.com/jetmedia/jetmedia/projections"
	"github.com/jetmedia/jetmedia/projections/roomsapi"
	"github.com/jetmedia/jetmedia/tests/rtcclient"
)

func runCLI(t *testing.T, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out, errOut bytes.Buffer
	err := run(ctx, args, &out, &errOut)
	if err != nil {
		t.Logf("jetmedia %s: %v\n%s", strings.Join(args, " "), err, errOut.String())
	}
	return out.String(), err
}

// cliNodeConfig is a node on loopback with random ports and a fresh data dir, whose NATS also
// listens on a random port so that the CLI reaches it while it runs.
func cliNodeConfig(t *testing.T, name string) app.Config {
	cfg := app.Defaults()
	cfg.Name = name
	cfg.DataDir = t.TempDir()
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.UDPPort = 0
	cfg.NATSListen = "127.0.0.1:0"
	return cfg
}

// startCLINode starts a node with cfg, closed at cleanup.
func startCLINode(t *testing.T, ctx context.Context, cfg app.Config) *app.Node {
	t.Helper()
	node, err := app.Start(ctx, cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = node.Close() })
	return node
}

// TestTools runs tail, rooms, replay and projections rebuild against a running node (through
// the NATS URL it recorded in its data dir) and then against its data dir alone.
func TestTools(t *testing.T) {
	cfg := cliNodeConfig(t, "cli")
	key := auth.GenerateKey("cli")
	cfg.AuthKeys = []auth.Key{key}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	node := startCLINode(t, ctx, cfg)

	api, err := rtcclient.NewAPI()
	require.NoError(t, err)
	tok, err := runCLI(t, "token", "--room", "cli-room", "--identity", "cli-user", "--grants", "publish", "--auth-key", key.String())
	require.NoError(t, err)
	pub, err := rtcclient.Publish(ctx, api, node.HTTPURL(), "cli-room", rtcclient.WithToken(strings.TrimSpace(tok)))
	require.NoError(t, err)
	defer pub.Close(true)
	require.Eventually(t, func() bool {
		r, err := projections.LoadRoom(ctx, node.Rooms(), "cli-room")
		return err == nil && len(r.Tracks) == 2
	}, 10*time.Second, 20*time.Millisecond)

	data := "--data=" + cfg.DataDir
	out, err := runCLI(t, "rooms", data, "--json")
	require.NoError(t, err)
	var rooms []roomsapi.RoomView
	require.NoError(t, json.Unmarshal([]byte(out), &rooms))
	require.Len(t, rooms, 1)
	require.Equal(t, "cli-room", rooms[0].Room.Room)
	require.Len(t, rooms[0].Tracks, 2)

	out, err = runCLI(t, "rooms", data)
	require.NoError(t, err)
	require.Contains(t, out, "room cli-room: 1 peers, 2 tracks")

	out, err = runCLI(t, "replay", data, "--room", "cli-room")
	require.NoError(t, err)
	require.Contains(t, out, events.TypeRoomCreated)
	require.Contains(t, out, events.TypeTrackPublished)
	require.Contains(t, out, "state after the last event")

	require.NoError(t, pub.Close(true))
	require.NoError(t, node.WaitProjected(ctx))
	out, err = runCLI(t, "projections", "rebuild", data)
	require.NoError(t, err)
	require.Contains(t, out, "identical to the live bucket")

	out, err = runCLI(t, "tail", data, "--room", "cli-room", "--no-follow")
	require.NoError(t, err)
	live := parseLines(t, out)
	require.Equal(t, events.TypeRoomCreated, live[0].Type)
	require.Equal(t, events.TypePeerLeft, live[len(live)-1].Type)

	// Stopped: the tools open the data dir themselves and see the same log.
	require.NoError(t, node.Close())
	out, err = runCLI(t, "tail", data, "--no-follow")
	require.NoError(t, err)
	require.Equal(t, ids(live), ids(parseLines(t, out)))
	out, err = runCLI(t, "replay", data, "--room", "cli-room", "--json")
	require.NoError(t, err)
	var rep struct {
		Events []events.Envelope `json:"events"`
		State  roomsapi.RoomView `json:"state"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &rep))
	require.Len(t, rep.Events, len(live))
	require.Empty(t, rep.State.Peers)
}

func TestToolErrors(t *testing.T) {
	dir := t.TempDir()
	_, err := runCLI(t, "tail", "--data", dir, "--no-follow")
	require.ErrorContains(t, err, "no jetmedia data")
	_, err = runCLI(t, "replay", "--data", dir)
	require.ErrorContains(t, err, "--room")
	_, err = runCLI(t, "frobnicate")
	require.ErrorIs(t, err, errUsage)
	_, err = runCLI(t, "serve", "--udp-host", "not-an-ip", "--data", dir)
	require.ErrorContains(t, err, "udp host")

	// A server without a NATS port holds its data dir: the tools say how to reach it.
	cfg := app.Defaults()
	cfg.DataDir = dir
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.UDPPort = 0
	node, err := app.Start(context.Background(), cfg)
	require.NoError(t, err)
	defer node.Close()
	_, err = runCLI(t, "tail", "--data", dir, "--no-follow")
	require.ErrorIs(t, err, app.ErrDataDirBusy)
	require.ErrorContains(t, err, "--nats-listen")
}

func parseLines(t *testing.T, out string) []events.Envelope {
	var evs []events.Envelope
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		e, err := events.Decode(sc.Bytes())
		require.NoError(t, err)
		evs = append(evs, e)
	}
	require.NotEmpty(t, evs)
	return evs
}

func ids(evs []events.Envelope) []string {
	out := make([]string, len(evs))
	for i, e := range evs {
		out[i] = e.ID
	}
	return out
}
