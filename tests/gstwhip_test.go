package tests

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/pipeline/auth"
	"github.com/jetmedia/jetmedia/tests/rtcclient"
)

// gstPackages are the Debian packages the GStreamer publisher needs (.ci/run installs them).
const gstPackages = "gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad " +
	"gstreamer1.0-plugins-ugly gstreamer1.0-nice python3-gi gir1.2-gst-plugins-bad-1.0"

// requireGStreamer returns a Python with GStreamer's bindings and every element
// gstwhip/whip.py uses, and the script's path; or it ends t: skipped (loudly) on a
// developer's machine, failed under CI=true, where a missing tool would hide a broken setup.
// $JETMEDIA_PYTHON names the interpreter; else python3 on PATH, then /usr/bin/python3 (the
// system's, which has Debian's python3-gi when a pyenv or venv python3 comes first).
func requireGStreamer(t *testing.T) (python, script string) {
	t.Helper()
	script, err := filepath.Abs(filepath.Join("gstwhip", "whip.py"))
	require.NoError(t, err)
	candidates := []string{"python3", "/usr/bin/python3"}
	if p := os.Getenv("JETMEDIA_PYTHON"); p != "" {
		candidates = []string{p}
	}
	var why []error
	for _, c := range candidates {
		path, err := exec.LookPath(c)
		if err != nil {
			why = append(why, err)
			continue
		}
		out, err := exec.Command(path, script, "--check").CombinedOutput()
		if err == nil {
			return path, script
		}
		why = append(why, fmt.Errorf("%s: %w: %s", path, err, bytes.TrimSpace(out)))
	}
	msg := fmt.Sprintf("no GStreamer WebRTC publisher (apt-get install %s; or set $JETMEDIA_PYTHON): %v",
		gstPackages, errors.Join(why...))
	if os.Getenv("CI") == "true" {
		t.Fatalf("GSTREAMER TEST CANNOT RUN IN CI: %s", msg)
	}
	t.Skipf("SKIPPING GSTREAMER TEST: %s", msg)
	return "", ""
}

// lockedBuffer collects a child process's output while the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestGStreamerWHIP: GStreamer's webrtcbin (libnice ICE, which offers no loopback
// candidates) publishes VP8 and H.264 over WHIP to a node on the default edge flags (the
// UDP port on every interface), and a WHEP viewer receives the video's key frames. With the
// old loopback-only default the publisher got 201 and never connected.
func TestGStreamerWHIP(t *testing.T) {
	python, script := requireGStreamer(t)
	cfg := nodeConfig(t, "gst")
	require.Equal(t, "0.0.0.0", cfg.UDPHost, "the test runs on the default edge flags")
	node := startNode(t, cfg)
	api := clientAPI(t)

	for _, tc := range []struct{ codec, mime string }{
		{"vp8", "video/VP8"},
		{"h264", "video/H264"},
	} {
		t.Run(tc.codec, func(t *testing.T) {
			room := newRoom("gst-" + tc.codec)
			ctx := ctxT(t, 60*time.Second)
			var out lockedBuffer
			cmd := exec.CommandContext(ctx, python, script, "--codec", tc.codec,
				"--url", node.HTTPURL()+"/whip/"+room, "--token", token(t, room, publisherIdentity, auth.Publish))
			cmd.Stdout, cmd.Stderr = &out, &out
			// Stopped, the script DELETEs its session before it exits.
			cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
			cmd.WaitDelay = 10 * time.Second
			require.NoError(t, cmd.Start())
			var waitErr error
			exited := make(chan struct{})
			go func() { waitErr = cmd.Wait(); close(exited) }()
			defer func() { // a failed test's publisher
				_ = cmd.Process.Kill()
				<-exited
			}()

			// The viewer waits for the track (409 until then) as long as the publisher runs.
			playCtx, stopPlay := context.WithCancel(ctx)
			defer stopPlay()
			go func() {
				select {
				case <-exited:
					stopPlay()
				case <-playCtx.Done():
				}
			}()
			viewer, err := rtcclient.Play(playCtx, api, node.HTTPURL(), room, asViewer(t, room))
			require.NoError(t, err, "publisher said:\n%s", &out)
			defer viewer.Close()
			deadline := time.Now().Add(30 * time.Second)
			for viewer.KeyFrames() < 2 {
				select {
				case <-exited:
					t.Fatalf("the publisher exited (%v) before the viewer got two key frames; it said:\n%s", waitErr, &out)
				case <-time.After(50 * time.Millisecond):
				}
				if time.Now().After(deadline) {
					t.Fatalf("the viewer got %d key frames, %d video packets in 30 s; the publisher said:\n%s",
						viewer.KeyFrames(), viewer.Video.Load(), &out)
				}
			}
			require.Equal(t, tc.mime, viewer.VideoCodec())

			require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
			select {
			case <-exited:
			case <-time.After(15 * time.Second):
				t.Fatalf("the publisher did not stop on SIGTERM; it said:\n%s", &out)
			}
			require.NoError(t, waitErr, "the publisher said:\n%s", &out)
			require.Contains(t, out.String(), "connection-state connected")
			require.Contains(t, out.String(), "deleted", "the publisher ended its session")
		})
	}
}
