package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/events"
	"github.com/jetmedia/jetmedia/pipeline/eventlog"
	"github.com/jetmedia/jetmedia/projections"
	"github.com/jetmedia/jetmedia/projections/readmodels"
	"github.com/jetmedia/jetmedia/tests/loggen"
	"github.com/jetmedia/jetmedia/tests/testports"
)

// TestHelperServe is not a test: TestReadModelsSurviveKill9 runs the test binary with it as a
// `jetmedia serve` process, to kill it with SIGKILL.
func TestHelperServe(t *testing.T) {
	args := os.Getenv("JETMEDIA_HELPER_SERVE")
	if args == "" {
		t.Skip("helper process for TestReadModelsSurviveKill9")
	}
	var argv []string
	require.NoError(t, json.Unmarshal([]byte(args), &argv))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	if err := run(ctx, append([]string{"serve"}, argv...), io.Discard, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "serve:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// TestReadModelsSurviveKill9 fills a log, starts `jetmedia serve` on it, kills it with SIGKILL
// while the read models are catching up, starts it again, and checks that the analytics and
// the audit index equal the pure fold of the log: nothing lost, nothing counted twice.
func TestReadModelsSurviveKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("starts server processes")
	}
	const perRoom = 5000 // enough that the kill lands while the models catch up, at thousands of events/s
	rooms := []string{"k0", "k1"}
	var evs []events.Envelope
	dir := withStore(t, func(js jetstream.JetStream) {
		for i, r := range rooms {
			require.NoError(t, loggen.Write(t.Context(), js, perRoom, loggen.New(r, uint64(i+7), genStart, 30*time.Second).Next))
		}
		require.NoError(t, eventlog.Read(t.Context(), js, eventlog.ReadOptions{Filter: eventlog.EventsSubjects}, func(e events.Envelope) error {
			evs = append(evs, e)
			return nil
		}))
	})
	require.Len(t, evs, 2*perRoom)
	lastOf := map[string]uint64{}
	for _, e := range evs {
		lastOf[e.Room] = e.Seq
	}

	addr := testports.Addr(t)
	startServe := func() *exec.Cmd {
		argv, _ := json.Marshal([]string{"--data", dir, "--http", addr, "--udp-port", "0", "--log-level", "error"})
		cmd := exec.Command(os.Args[0], "-test.run=^TestHelperServe$")
		cmd.Env = append(os.Environ(), "JETMEDIA_HELPER_SERVE="+string(argv))
		cmd.Stderr = os.Stderr
		require.NoError(t, cmd.Start())
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		return cmd
	}
	lastSeq := func(room string) uint64 {
		resp, err := http.Get("http://" + addr + "/v1/analytics/rooms/" + room)
		if err != nil {
			return 0
		}
		defer func() { _ = resp.Body.Close() }()
		var f projections.RoomFigures
		if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&f) != nil {
			return 0
		}
		return f.LastSeq
	}
	head := evs[len(evs)-1].Seq

	cmd := startServe()
	require.Eventually(t, func() bool { return lastSeq("k0") > perRoom/3 }, 60*time.Second, 2*time.Millisecond)
	before := lastSeq("k0")
	require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
	_ = cmd.Wait()
	require.Less(t, before, head)
	t.Logf("killed with the analytics of k0 at seq %d of %d", before, head)
	require.Zero(t, lastSeq("k0"), "the server is gone")

	cmd = startServe()
	require.Eventually(t, func() bool { return lastSeq("k0") == lastOf["k0"] && lastSeq("k1") == lastOf["k1"] }, 90*time.Second, 20*time.Millisecond)
	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM)) // lets the audit index catch up too
	require.NoError(t, cmd.Wait())

	at := genStart.Add(72 * time.Hour)
	db, err := projections.OpenPebble(filepath.Join(dir, readmodels.Dir), nil, true)
	require.NoError(t, err)
	defer func() { _ = db.Close() }()
	byActor := map[string]int{}
	want := map[string]projections.RoomAnalytics{}
	for _, e := range evs {
		byActor[e.Actor]++
		a, ok := want[e.Room]
		if !ok {
			a = projections.NewRoomAnalytics(e.Room)
		}
		want[e.Room], err = projections.FoldAnalytics(a, e)
		require.NoError(t, err)
	}
	for _, r := range rooms {
		got, ok, err := projections.LoadAnalytics(db, r)
		require.NoError(t, err)
		require.True(t, ok)
		require.Equal(t, want[r].Figures(at), got.Figures(at), r)
	}
	for actor, n := range byActor {
		refs, err := projections.AuditWho(db, projections.AuditQuery{Identity: actor})
		require.NoError(t, err)
		require.Len(t, refs, n, actor)
	}
	cp, err := projections.Checkpoint(db, projections.AuditModelName)
	require.NoError(t, err)
	require.Equal(t, head, cp)
}
