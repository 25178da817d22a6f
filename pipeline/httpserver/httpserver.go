package httpserver

import (
	"errors"
	"fmt"
	stdlog "log"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strings"
	"time"

	"golang.org/x/net/netutil"
)

// Config is the HTTP server's protection. Defaults() gives the documented defaults.
type Config struct {
	// ReadHeaderTimeout bounds reading a request's headers (10 s).
	ReadHeaderTimeout time.Duration
	// ReadTimeout bounds reading a whole request, body included (30 s): a client that stalls
	// its body is cut off.
	ReadTimeout time.Duration
	// WriteTimeout bounds writing a response (30 s). Streaming handlers extend it as they make
	// progress (Extend); WebSockets are not bound by it once upgraded.
	WriteTimeout time.Duration
	// IdleTimeout closes a keep-alive connection that sends no next request (60 s).
	IdleTimeout time.Duration
	// MaxConns caps the open connections (4096); more wait in the kernel's accept queue.
	MaxConns int
	// AllowedOrigins are the origins, besides the node's own, whose pages may call the node
	// (CORS) and open the /rtc WebSocket: https://app.example.com, or host patterns such as
	// *.example.com; "*" allows every origin. Requests from other origins get 403.
	AllowedOrigins []string
	// DevOrigins also allows pages on the loopback interface (http://localhost:5173, a dev
	// server), set by the node in dev mode.
	DevOrigins bool
	// PeerOrigins, when set, are the origins of the system's other nodes (their HTTP base
	// URLs, from their leases): their pages may call this node too, as a page that placement
	// sends from one node to another (/rtc's redirect, a 307) keeps its first node's origin.
	PeerOrigins func() []string
}

// Defaults returns the documented defaults.
func Defaults() Config {
	return Config{
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxConns:          4096,
	}
}

// Validate reports every problem of the config at once.
func (c Config) Validate() error {
	var errs []error
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"read header timeout", c.ReadHeaderTimeout}, {"read timeout", c.ReadTimeout},
		{"write timeout", c.WriteTimeout}, {"idle timeout", c.IdleTimeout}} {
		if d.v <= 0 {
			errs = append(errs, fmt.Errorf("http %s %v: must be positive", d.name, d.v))
		}
	}
	if c.MaxConns < 1 {
		errs = append(errs, fmt.Errorf("http max conns %d: at least 1", c.MaxConns))
	}
	for _, o := range c.AllowedOrigins {
		if err := checkOrigin(o); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func checkOrigin(o string) error {
	if o == "*" {
		return nil
	}
	if strings.Contains(o, "://") {
		u, err := url.Parse(o)
		if err != nil || u.Host == "" || (u.Path != "" && u.Path != "/") {
			return fmt.Errorf("allowed origin %q: give scheme://host[:port], a host pattern or *", o)
		}
		return nil
	}
	if _, err := path.Match(o, ""); err != nil {
		return fmt.Errorf("allowed origin %q: %w", o, err)
	}
	return nil
}

// Listen listens on addr with at most c.MaxConns connections open at once.
func (c Config) Listen(addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	return netutil.LimitListener(ln, c.MaxConns), nil
}

// Server returns an http.Server with the timeouts that serves h behind the origin check.
func (c Config) Server(h http.Handler, log *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           c.Origins(h),
		ReadHeaderTimeout: c.ReadHeaderTimeout,
		ReadTimeout:       c.ReadTimeout,
		WriteTimeout:      c.WriteTimeout,
		IdleTimeout:       c.IdleTimeout,
		ErrorLog:          errorLog(log),
	}
}

// Origins answers 403 to a request a browser sent from a page of an origin that is not
// allowed, and adds the CORS headers for one that is (answering its preflight itself). Requests without an Origin header
// (other clients than browsers, same-origin navigation) pass untouched.
func (c Config) Origins(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		origin := r.Header.Get("Origin")
		if origin == "" {
			next.ServeHTTP(w, r)
			return
		}
		if !c.allowed(origin, r.Host) {
			http.Error(w, fmt.Sprintf("origin %s may not call this server (allow it with --allowed-origins)", origin), http.StatusForbidden)
			return
		}
		h := w.Header()
		h.Set("Access-Control-Allow-Origin", origin)
		h.Add("Vary", "Origin")
		h.Set("Access-Control-Allow-Methods", "GET, POST, PATCH, DELETE, OPTIONS")
		h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type, If-Match")
		h.Set("Access-Control-Expose-Headers", "Location, ETag, Link, Accept-Post, Retry-After")
		if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
			// A preflight: the headers above are the answer, whatever the path serves.
			w.WriteHeader(http.StatusNoContent)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// allowed reports whether a page of origin may call the server reached as host.
func (c Config) allowed(origin, host string) bool {
	if slices.Contains(c.AllowedOrigins, "*") {
		return true
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		return false // "null" (sandboxed frames, file://) and garbage
	}
	if strings.EqualFold(u.Host, host) {
		return true // same origin
	}
	if c.DevOrigins && isLoopback(u.Hostname()) {
		return true
	}
	if c.PeerOrigins != nil {
		for _, o := range c.PeerOrigins() {
			if strings.EqualFold(strings.TrimSuffix(o, "/"), u.Scheme+"://"+u.Host) {
				return true
			}
		}
	}
	for _, o := range c.AllowedOrigins {
		if strings.Contains(o, "://") {
			if strings.EqualFold(strings.TrimSuffix(o, "/"), u.Scheme+"://"+u.Host) {
				return true
			}
		} else if ok, _ := path.Match(strings.ToLower(o), strings.ToLower(u.Host)); ok {
			return true
		}
	}
	return false
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// SlowWork is how long an admin request whose answer takes long to compute (a fold or a
// verification of a whole log) may take to answer, past the server's write timeout.
const SlowWork = 10 * time.Minute

// Extend moves the response's write deadline d from now (0: no deadline), for a handler that
// streams longer than the server's write timeout: call it as the stream makes progress, so a
// reader that stops is still cut off.
func Extend(w http.ResponseWriter, d time.Duration) {
	var t time.Time
	if d > 0 {
		t = time.Now().Add(d)
	}
	_ = http.NewResponseController(w).SetWriteDeadline(t)
}

func errorLog(l *slog.Logger) *stdlog.Logger {
	if l == nil {
		return nil
	}
	return slog.NewLogLogger(l.Handler(), slog.LevelWarn)
}
