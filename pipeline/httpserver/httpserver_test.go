package httpserver

import (
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestOrigins(t *testing.T) {
	for _, tc := range []struct {
		name    string
		allowed []string
		dev     bool
		origin  string
		want    int
	}{
		{"no origin: not a cross-origin browser request", nil, false, "", http.StatusOK},
		{"same origin", nil, false, "http://node.example:8080", http.StatusOK},
		{"other origin by default", nil, false, "https://evil.example", http.StatusForbidden},
		{"null origin", nil, false, "null", http.StatusForbidden},
		{"listed origin", []string{"https://app.example"}, false, "https://app.example", http.StatusOK},
		{"listed origin, other scheme", []string{"https://app.example"}, false, "http://app.example", http.StatusForbidden},
		{"host pattern", []string{"*.example"}, false, "https://app.example", http.StatusOK},
		{"host pattern, other host", []string{"*.example"}, false, "https://app.other", http.StatusForbidden},
		{"everyone", []string{"*"}, false, "https://anyone.example", http.StatusOK},
		{"dev page on loopback in dev mode", nil, true, "http://localhost:5173", http.StatusOK},
		{"dev page on 127.0.0.1 in dev mode", nil, true, "http://127.0.0.1:5173", http.StatusOK},
		{"loopback page outside dev mode", nil, false, "http://localhost:5173", http.StatusForbidden},
		{"another node of the system", nil, false, "http://node-b.example:8080", http.StatusOK},
		{"another node's host, other port", nil, false, "http://node-b.example:9090", http.StatusForbidden},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Defaults()
			c.AllowedOrigins, c.DevOrigins = tc.allowed, tc.dev
			c.PeerOrigins = func() []string { return []string{"http://node-b.example:8080/", ""} }
			require.NoError(t, c.Validate())
			h := c.Origins(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
			r := httptest.NewRequest(http.MethodGet, "http://node.example:8080/v1/rooms", nil)
			if tc.origin != "" {
				r.Header.Set("Origin", tc.origin)
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			require.Equal(t, tc.want, w.Code)
			if tc.want == http.StatusOK && tc.origin != "" {
				require.Equal(t, tc.origin, w.Header().Get("Access-Control-Allow-Origin"))
			} else {
				require.Empty(t, w.Header().Get("Access-Control-Allow-Origin"))
			}
		})
	}
}

// TestPreflight: an allowed origin's preflight is answered 204 whatever the path; another
// origin's is refused; an OPTIONS that is no preflight reaches the handler (WHIP's).
func TestPreflight(t *testing.T) {
	c := Defaults()
	c.AllowedOrigins = []string{"https://app.example"}
	h := c.Origins(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusTeapot) }))
	do := func(origin string, preflight bool) *httptest.ResponseRecorder {
		r := httptest.NewRequest(http.MethodOptions, "http://node.example/v1/rooms", nil)
		r.Header.Set("Origin", origin)
		if preflight {
			r.Header.Set("Access-Control-Request-Method", "GET")
			r.Header.Set("Access-Control-Request-Headers", "authorization")
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	w := do("https://app.example", true)
	require.Equal(t, http.StatusNoContent, w.Code)
	require.Contains(t, w.Header().Get("Access-Control-Allow-Headers"), "Authorization")
	require.Equal(t, http.StatusForbidden, do("https://evil.example", true).Code)
	require.Equal(t, http.StatusTeapot, do("https://app.example", false).Code)
}

func TestValidate(t *testing.T) {
	c := Defaults()
	c.IdleTimeout = 0
	c.MaxConns = 0
	c.AllowedOrigins = []string{"https://x.example/path", "[bad"}
	err := c.Validate()
	require.ErrorContains(t, err, "idle timeout")
	require.ErrorContains(t, err, "max conns")
	require.ErrorContains(t, err, `"https://x.example/path"`)
	require.ErrorContains(t, err, `"[bad"`)
}

// TestMaxConns: past the cap a connection is not served until another one closes.
func TestMaxConns(t *testing.T) {
	c := Defaults()
	c.MaxConns = 2
	ln, err := c.Listen("127.0.0.1:0")
	require.NoError(t, err)
	srv := c.Server(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}), nil)
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	var held []net.Conn
	for range 2 {
		conn, err := net.Dial("tcp", ln.Addr().String())
		require.NoError(t, err)
		held = append(held, conn)
	}
	time.Sleep(50 * time.Millisecond) // both accepted
	third, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err) // the kernel's accept queue takes it
	defer third.Close()
	_, err = third.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
	require.NoError(t, err)
	buf := make([]byte, 64)
	require.NoError(t, third.SetReadDeadline(time.Now().Add(300*time.Millisecond)))
	_, err = third.Read(buf)
	var ne net.Error
	require.True(t, errors.As(err, &ne) && ne.Timeout(), "not served while two are open: %v", err)
	require.NoError(t, held[0].Close())
	require.NoError(t, third.SetReadDeadline(time.Now().Add(5*time.Second)))
	n, err := third.Read(buf)
	require.NoError(t, err, "served once one closed")
	require.Contains(t, string(buf[:n]), "200 OK")
	_ = held[1].Close()
}
