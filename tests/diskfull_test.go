package tests

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/events"
	"github.com/jetmedia/jetmedia/ingress/signal"
	"github.com/jetmedia/jetmedia/ingress/signal/client"
	"github.com/jetmedia/jetmedia/pipeline/eventlog"
	"github.com/jetmedia/jetmedia/projections"
	"github.com/jetmedia/jetmedia/tests/rtcclient"
)

// mountTmpfs mounts a tmpfs of size bytes on a fresh directory. Where mounting is not
// permitted the test is skipped loudly, and fails under CI=true.
func mountTmpfs(t *testing.T, size int64) string {
	t.Helper()
	dir := t.TempDir()
	out, err := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%d", size), "tmpfs", dir).CombinedOutput()
	if err != nil {
		msg := fmt.Sprintf("cannot mount a tmpfs (needs root or CAP_SYS_ADMIN): %v: %s", err, out)
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip("SKIPPED: " + msg)
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-l", dir).Run() })
	return dir
}

// fill writes a file on dir's filesystem until it is full and returns its path.
func fill(t *testing.T, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "filler")
	f, err := os.Create(path)
	require.NoError(t, err)
	defer f.Close()
	buf := make([]byte, 64<<10)
	for {
		if _, err := f.Write(buf); err != nil {
			require.True(t, errors.Is(err, syscall.ENOSPC), "filling: %v", err)
			break
		}
	}
	// The last partial blocks too.
	for _, n := range []int{4096, 512, 1} {
		for {
			if _, err := f.Write(buf[:n]); err != nil {
				break
			}
		}
	}
	return path
}

// TestDiskFull: with the data dir on a full file system, WHIP answers 503 within a second and
// says why, /readyz says why, and a room peer whose update could not be recorded is told so;
// once space returns the node writes again by itself (no restart), the update sent again is
// recorded, and every room's hash chain verifies.
func TestDiskFull(t *testing.T) {
	dir := mountTmpfs(t, 64<<20)
	cfg := nodeConfig(t, "diskfull")
	cfg.DataDir = filepath.Join(dir, "data")
	node := startNode(t, cfg)
	api := clientAPI(t)
	ctx := ctxT(t, 120*time.Second)
	room := newRoom("full")
	pub := publishTracks(t, ctx, api, node, room)
	defer pub.Close(true)
	alice := joinSDK(t, ctx, node, room, "alice", false)

	filler := fill(t, dir)
	// JetStream acknowledges a write before its store flushes it; the flush that meets the
	// full disk fails, and from then on the store refuses every write without answering. The
	// node must notice and answer at once.
	filled := time.Now()
	for {
		p, err := rtcclient.Publish(ctx, api, node.HTTPURL(), room, asPublisher(t, room))
		if err != nil {
			t.Logf("first refusal %v after the disk filled: %v", time.Since(filled), err)
			break
		}
		_ = p.Close(true)
		require.Less(t, time.Since(filled), 10*time.Second, "the node still accepts sessions on a full disk")
	}
	for i := range 3 {
		start := time.Now()
		_, err := rtcclient.Publish(ctx, api, node.HTTPURL(), room, asPublisher(t, room))
		took := time.Since(start)
		t.Logf("WHIP on a full disk: %v after %v", err, took)
		var he *rtcclient.HTTPError
		require.True(t, errors.As(err, &he), "%v", err)
		require.Equal(t, http.StatusServiceUnavailable, he.Status)
		require.Contains(t, he.Error(), "no space left on device")
		require.Less(t, took, time.Second, "attempt %d", i)
	}
	ready := func() (int, string) {
		resp, err := http.Get(node.HTTPURL() + "/readyz")
		require.NoError(t, err)
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	code, body := ready()
	t.Logf("readyz on a full disk: %d %s", code, body)
	require.Equal(t, http.StatusServiceUnavailable, code)
	require.Contains(t, body, "cannot take writes")

	// An accepted message whose event cannot be recorded is answered, not dropped.
	require.NoError(t, alice.room.UpdateMetadata("while-full"))
	require.Eventually(t, func() bool {
		for _, e := range alice.seen(client.ErrorEvent) {
			if e.Code == signal.CodeUnavailable {
				return true
			}
		}
		return false
	}, 5*time.Second, 10*time.Millisecond, "no unavailable error for the unrecorded update")

	require.NoError(t, os.Remove(filler))
	freed := time.Now()
	var recovered time.Duration
	for {
		p, err := rtcclient.Publish(ctx, api, node.HTTPURL(), room+"-after", asPublisher(t, room+"-after"))
		if err == nil {
			recovered = time.Since(freed)
			_ = p.Close(true)
			break
		}
		require.Less(t, time.Since(freed), 10*time.Second, "no recovery within 10 s of space returning: %v", err)
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("WHIP accepted again %v after space returned", recovered)
	require.Eventually(t, func() bool { c, _ := ready(); return c == http.StatusOK }, 15*time.Second, 50*time.Millisecond, "readyz after recovery")
	code, body = ready()
	t.Logf("readyz after recovery: %d %s", code, body)

	// The same update again is recorded now.
	require.NoError(t, alice.room.UpdateMetadata("while-full"))
	// Each look reads the room's log with a deadline of its own: a read that stalls (seen
	// once under load, right after recovery) is tried again, not a failure by itself.
	updated := func() (bool, error) {
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		found := false
		err := eventlog.Read(rctx, node.JetStream(), eventlog.ReadOptions{Filter: eventlog.RoomEventsFilter(room)}, func(e events.Envelope) error {
			found = found || e.Type == events.TypePeerUpdated
			return nil
		})
		return found, err
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		found, err := updated()
		if found && err == nil {
			break
		}
		require.True(t, time.Now().Before(deadline), "the retried update did not reach the log (last read: %v)", err)
	}

	chains, err := projections.VerifyChains(ctx, node.JetStream(), "", nil)
	require.NoError(t, err)
	require.NotEmpty(t, chains)
	for _, c := range chains {
		require.Nil(t, c.Break, "room %s", c.Room)
		require.False(t, c.Truncated, "room %s", c.Room)
	}
	t.Logf("hash chains of %d rooms verify", len(chains))
}
