package tests

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/tests/rtcclient"
)

// TestHTTPClosesSlowClients opens 500 connections that stall a WHIP request's body and 500
// keep-alive connections that go idle after one request, then publishes and plays a WHIP
// stream beside them: the session works, and the server closes every abusive connection
// within its read or idle timeout (plus slack for a loaded machine).
func TestHTTPClosesSlowClients(t *testing.T) {
	const perKind = 500
	var lim syscall.Rlimit
	require.NoError(t, syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim))
	if lim.Cur < 4*perKind+512 {
		lim.Cur = min(lim.Max, 4*perKind+512) // both ends of each connection are in this process
		require.NoError(t, syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim))
	}
	if lim.Cur < 4*perKind+512 {
		t.Skipf("RLIMIT_NOFILE %d is too low for %d connections", lim.Cur, 2*perKind)
	}
	cfg := nodeConfig(t, "abuse")
	cfg.HTTP.ReadHeaderTimeout = 2 * time.Second
	cfg.HTTP.ReadTimeout = 3 * time.Second
	cfg.HTTP.IdleTimeout = 3 * time.Second
	cfg.HTTP.MaxConns = 4 * perKind
	node := startNode(t, cfg)
	addr := strings.TrimPrefix(node.HTTPURL(), "http://")
	room := newRoom("abuse")
	const slack = 5 * time.Second

	stalled := dialMany(t, addr, perKind, func(c net.Conn) error {
		// A WHIP offer that promises 4 KiB and sends 10 bytes of it.
		_, err := fmt.Fprintf(c, "POST /whip/%s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/sdp\r\n"+
			"Authorization: Bearer %s\r\nContent-Length: 4096\r\n\r\nv=0\r\no=- 1", room, addr, token(t, room, publisherIdentity))
		return err
	})
	stalledBy := time.Now().Add(cfg.HTTP.ReadTimeout + slack)
	idle := dialMany(t, addr, perKind, func(c net.Conn) error {
		if _, err := fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: %s\r\n\r\n", addr); err != nil {
			return err
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		return resp.Body.Close()
	})
	idleBy := time.Now().Add(cfg.HTTP.IdleTimeout + slack)

	// A normal session meanwhile: publish, and a viewer receives video.
	ctx := ctxT(t, 30*time.Second)
	api := clientAPI(t)
	pub, err := rtcclient.Publish(ctx, api, node.HTTPURL(), room, asPublisher(t, room))
	require.NoError(t, err)
	defer pub.Close(true)
	viewer, err := rtcclient.Play(ctx, api, node.HTTPURL(), room, asViewer(t, room))
	require.NoError(t, err)
	defer viewer.Close()
	require.Eventually(t, func() bool { return !viewer.FirstVideo().IsZero() }, 20*time.Second, 20*time.Millisecond,
		"the viewer receives video while 1000 connections are held")

	requireClosedBy(t, "stalled body", stalled, stalledBy)
	requireClosedBy(t, "idle keep-alive", idle, idleBy)
}

// dialMany opens n connections to addr and runs start on each.
func dialMany(t *testing.T, addr string, n int, start func(net.Conn) error) []net.Conn {
	t.Helper()
	conns := make([]net.Conn, n)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range conns {
		wg.Go(func() {
			c, err := net.DialTimeout("tcp", addr, 10*time.Second)
			if err != nil {
				errs <- err
				return
			}
			conns[i] = c
			if err := start(c); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	t.Cleanup(func() {
		for _, c := range conns {
			_ = c.Close()
		}
	})
	return conns
}

// requireClosedBy requires every connection to be closed by the server before deadline: a read
// ends in EOF or a reset (after whatever response the server wrote), not in our timeout.
func requireClosedBy(t *testing.T, kind string, conns []net.Conn, deadline time.Time) {
	t.Helper()
	var wg sync.WaitGroup
	open := make(chan error, len(conns))
	for _, c := range conns {
		wg.Go(func() {
			_ = c.SetReadDeadline(deadline)
			_, err := io.Copy(io.Discard, c)
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				open <- err
			}
		})
	}
	wg.Wait()
	close(open)
	require.Empty(t, len(open), "%s connections still open at the timeout plus slack", kind)
	t.Logf("%d %s connections closed by the server before %s", len(conns), kind, deadline.Format(time.TimeOnly))
}
