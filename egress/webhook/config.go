package webhook

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/jetmedia/jetmedia/pipeline/eventlog"
)

// Endpoint is one receiver of events.
type Endpoint struct {
	// URL receives a POST per event.
	URL string
	// Types, when not empty, are the only event types delivered ("peer.joined.v1"; a type
	// without version, "peer.joined", matches every version). Other events are skipped.
	Types []string
	// Secret signs each request (HMAC-SHA256). A secret "whsec_<base64>" is used as the
	// decoded bytes, as Standard Webhooks libraries do; any other string as its UTF-8 bytes.
	// Empty: requests are not signed.
	Secret string
	// Breaker is the endpoint's circuit breaker (zero value: on, with the defaults).
	Breaker Breaker
}

// ID names the endpoint in consumer and subject names: the first 16 hex digits of the
// SHA-256 of its URL. Changing an endpoint's URL makes it a new endpoint.
func (e Endpoint) ID() string {
	sum := sha256.Sum256([]byte(e.URL))
	return hex.EncodeToString(sum[:8])
}

// Durable is the name of the endpoint's durable consumer on EVENTS.
func (e Endpoint) Durable() string { return "webhook-" + e.ID() }

// key is the HMAC key the secret stands for.
func (e Endpoint) key() ([]byte, error) {
	if rest, ok := strings.CutPrefix(e.Secret, "whsec_"); ok {
		k, err := base64.StdEncoding.DecodeString(rest)
		if err != nil {
			return nil, fmt.Errorf("secret whsec_…: not base64: %w", err)
		}
		return k, nil
	}
	return []byte(e.Secret), nil
}

// Wants reports whether events of type t go to the endpoint.
func (e Endpoint) Wants(t string) bool {
	if len(e.Types) == 0 {
		return true
	}
	for _, want := range e.Types {
		if want == t {
			return true
		}
		if base, ok := strings.CutPrefix(t, want+"."); ok && !strings.Contains(base, ".") {
			return true // "peer.joined" matches "peer.joined.v1"
		}
	}
	return false
}

// String shows the endpoint without its secret.
func (e Endpoint) String() string {
	s := e.redactedURL()
	if len(e.Types) > 0 {
		s += " types=" + strings.Join(e.Types, "|")
	}
	switch b := e.Breaker; {
	case b.Off:
		s += " breaker=off"
	case b.Failures != 0 || b.Window != 0:
		b = b.withDefaults()
		s += fmt.Sprintf(" breaker=%d/%v", b.Failures, b.Window)
	}
	return s
}

// redactedURL is the URL with a password in it masked, for logs.
func (e Endpoint) redactedURL() string {
	u, err := url.Parse(e.URL)
	if err != nil {
		return e.URL
	}
	return u.Redacted()
}

// parseBreaker reads "off", "on", "<failures>" or "<failures>/<window>".
func parseBreaker(v string) (Breaker, error) {
	switch v {
	case "off":
		return Breaker{Off: true}, nil
	case "on", "":
		return Breaker{}, nil
	}
	n, w, hasWindow := strings.Cut(v, "/")
	var b Breaker
	var err error
	if b.Failures, err = strconv.Atoi(n); err != nil || b.Failures < 1 {
		return Breaker{}, fmt.Errorf("breaker %q: give off, on, <failures> or <failures>/<window> (5/1m)", v)
	}
	if hasWindow {
		if b.Window, err = time.ParseDuration(w); err != nil || b.Window <= 0 {
			return Breaker{}, fmt.Errorf("breaker %q: window %q is not a positive duration (30s, 1m)", v, w)
		}
	}
	return b, nil
}

// ParseEndpoint reads "url=https://…,types=peer.joined|peer.left,secret=…,breaker=…" (a bare
// URL is "url=" alone). Keys may come in any order; the secret must not contain a comma.
func ParseEndpoint(s string) (Endpoint, error) {
	var e Endpoint
	for _, part := range strings.Split(strings.TrimSpace(s), ",") {
		k, v, ok := strings.Cut(part, "=")
		if !ok {
			if e.URL == "" && strings.Contains(part, "://") {
				e.URL = part
				continue
			}
			return Endpoint{}, fmt.Errorf("webhook %q: %q is not key=value (keys: url, types, secret, breaker)", s, part)
		}
		switch strings.TrimSpace(k) {
		case "url":
			e.URL = v
		case "types", "type":
			for _, t := range strings.Split(v, "|") {
				if t = strings.TrimSpace(t); t != "" {
					e.Types = append(e.Types, t)
				}
			}
		case "secret":
			e.Secret = v
		case "breaker":
			b, err := parseBreaker(strings.TrimSpace(v))
			if err != nil {
				return Endpoint{}, fmt.Errorf("webhook %q: %w", s, err)
			}
			e.Breaker = b
		default:
			return Endpoint{}, fmt.Errorf("webhook %q: unknown key %q (keys: url, types, secret, breaker)", s, k)
		}
	}
	if err := e.validate(); err != nil {
		return Endpoint{}, err
	}
	return e, nil
}

func (e Endpoint) validate() error {
	u, err := url.Parse(e.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("webhook url %q: give an absolute http or https URL", e.URL)
	}
	if _, err := e.key(); err != nil {
		return fmt.Errorf("webhook %s: %w", e.URL, err)
	}
	if err := e.Breaker.validate(); err != nil {
		return fmt.Errorf("webhook %s: %w", e.URL, err)
	}
	return nil
}

// Config configures delivery to every endpoint.
type Config struct {
	Endpoints []Endpoint
	// MaxAttempts is how many times one event is tried before it is parked (default 10).
	MaxAttempts int
	// InitialBackoff is the wait after the first failure (default 500 ms); each further
	// failure doubles it up to MaxBackoff (default 1 min). Each wait is jittered: a random
	// duration between half of it and all of it.
	InitialBackoff time.Duration
	MaxBackoff     time.Duration
	// Timeout bounds one request, connection and response included (default 10 s).
	Timeout time.Duration
	// Lanes is the number of rooms delivered in parallel per endpoint (default 16). A room
	// always uses the same lane, so its events go one at a time, in order.
	Lanes int
	// MaxPending caps the events of one endpoint taken from the log and not yet delivered or
	// parked (default 1024); the log is read no further ahead than that.
	MaxPending int
	// Client sends the requests (default: a client with Timeout).
	Client *http.Client
	Logger *slog.Logger
	// Storage gives the parked stream the log's replicas and placement (the node sets it).
	Storage eventlog.StorageConfig
}

// Defaults returns the documented defaults (no endpoints).
func Defaults() Config {
	return Config{
		MaxAttempts:    10,
		InitialBackoff: 500 * time.Millisecond,
		MaxBackoff:     time.Minute,
		Timeout:        10 * time.Second,
		Lanes:          16,
		MaxPending:     1024,
	}
}

// Validate reports every problem at once.
func (c Config) Validate() error {
	var errs []error
	seen := map[string]bool{}
	for _, e := range c.Endpoints {
		if err := e.validate(); err != nil {
			errs = append(errs, err)
		}
		if seen[e.URL] {
			errs = append(errs, fmt.Errorf("webhook %s configured twice", e.URL))
		}
		seen[e.URL] = true
	}
	if c.MaxAttempts < 1 {
		errs = append(errs, fmt.Errorf("webhook max attempts %d: at least 1", c.MaxAttempts))
	}
	if c.InitialBackoff <= 0 || c.MaxBackoff < c.InitialBackoff {
		errs = append(errs, fmt.Errorf("webhook backoff %v..%v: need 0 < initial <= max", c.InitialBackoff, c.MaxBackoff))
	}
	if c.Timeout <= 0 {
		errs = append(errs, errors.New("webhook timeout must be positive"))
	}
	if c.Lanes < 1 || c.MaxPending < c.Lanes {
		errs = append(errs, fmt.Errorf("webhook lanes %d, max pending %d: need 1 <= lanes <= max pending", c.Lanes, c.MaxPending))
	}
	return errors.Join(errs...)
}

// backoff is the wait after the n-th failed attempt (n >= 1) before jitter.
func (c Config) backoff(n int) time.Duration {
	d := c.InitialBackoff
	for i := 1; i < n && d < c.MaxBackoff; i++ {
		d *= 2
	}
	return min(d, c.MaxBackoff)
}
