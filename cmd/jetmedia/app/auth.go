package app

import (
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/jetmedia/jetmedia/events"
	"github.com/jetmedia/jetmedia/pipeline/auth"
	"github.com/jetmedia/jetmedia/pipeline/rtc"
)

// DevTokenTTL bounds the tokens GET /dev/token mints.
const (
	DevTokenTTL    = time.Hour
	MaxDevTokenTTL = 24 * time.Hour
)

// setupAuth builds the node's keyring from the configured keys, or, with none, enters dev
// mode: a random key only this process knows, and GET /dev/token to mint tokens with it.
func (n *Node) setupAuth() error {
	keys := n.cfg.AuthKeys
	if len(keys) == 0 {
		n.devMode = true
		keys = []auth.Key{auth.GenerateKey("dev")}
	}
	k, err := auth.NewKeyring(keys...)
	if err != nil {
		return fmt.Errorf("auth: %w", err)
	}
	n.keys = k
	if n.devMode {
		msg := "DEV MODE: no auth key configured (--auth-key or JETMEDIA_AUTH_KEYS); tokens are signed with a random key and anyone who reaches the HTTP port can mint one at GET /dev/token. Do not expose this node."
		if host, _, _ := net.SplitHostPort(n.cfg.HTTPAddr); !isLoopback(host) {
			msg += " It listens on " + n.cfg.HTTPAddr + ", which is not loopback."
		}
		n.log.Warn(msg)
	}
	return nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// DevMode reports whether the node runs without configured keys (see setupAuth).
func (n *Node) DevMode() bool { return n.devMode }

// Keyring is the node's token keyring: it verifies tokens and signs with the first key.
func (n *Node) Keyring() *auth.Keyring { return n.keys }

// registerAuth adds the dev-mode token endpoint; outside dev mode the path does not exist
// (the demo page's file server answers 404).
func (n *Node) registerAuth(mux *http.ServeMux) {
	if !n.devMode {
		return
	}
	mux.HandleFunc("GET /dev/token", n.devToken)
}

// devToken mints a token: ?room=R (required; * for every room) &identity=I (default: a random
// dev-… id) &name=N &grants=publish,subscribe (the default) &ttl=1h (at most 24h)
// &format=text (the bare token instead of JSON).
func (n *Node) devToken(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	room := q.Get("room")
	if room != auth.AnyRoom && !events.ValidID(room) {
		rtc.WriteError(w, r, n.log, rtc.Errorf(http.StatusBadRequest, "room %q is not a valid id (1-64 of A-Z a-z 0-9 _ -, or * for every room)", room))
		return
	}
	identity := q.Get("identity")
	if identity == "" {
		identity = "dev-" + events.NewID()[:8]
	}
	grants := []auth.Grant{auth.Publish, auth.Subscribe}
	if s := q.Get("grants"); s != "" {
		var err error
		if grants, err = auth.ParseGrants(s); err != nil {
			rtc.WriteError(w, r, n.log, rtc.Errorf(http.StatusBadRequest, "%v", err))
			return
		}
	}
	ttl := DevTokenTTL
	if s := q.Get("ttl"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 || d > MaxDevTokenTTL {
			rtc.WriteError(w, r, n.log, rtc.Errorf(http.StatusBadRequest, "ttl %q: want a duration up to %s", s, MaxDevTokenTTL))
			return
		}
		ttl = d
	}
	c := auth.NewClaims(room, identity, grants, time.Now(), ttl)
	c.Name = q.Get("name")
	tok, err := n.keys.Sign(c)
	if err != nil {
		rtc.WriteError(w, r, n.log, rtc.Errorf(http.StatusBadRequest, "%v", err))
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	if q.Get("format") == "text" {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = fmt.Fprintln(w, tok)
		return
	}
	writeJSON(w, DevToken{Token: tok, Room: room, Identity: identity, Name: c.Name, Grants: grants,
		ExpiresAt: c.ExpiresAt.UTC().Truncate(time.Second), DevMode: true})
}

// DevToken is the JSON reply of GET /dev/token.
type DevToken struct {
	Token     string       `json:"token"`
	Room      string       `json:"room"`
	Identity  string       `json:"identity"`
	Name      string       `json:"name,omitempty"`
	Grants    []auth.Grant `json:"grants"`
	ExpiresAt time.Time    `json:"expires_at"`
	DevMode   bool         `json:"dev_mode"`
}

// authorizeAdmin lets a request to an admin endpoint of room (auth.AnyRoom for the endpoints
// that span rooms) through, or answers 401/403 and returns false. It needs a token with the
// admin grant; in dev mode a request without a token is let through (the demo and the CLI's
// users need no token on their own machine), but a token, if sent, is checked all the same.
func (n *Node) authorizeAdmin(w http.ResponseWriter, r *http.Request, room string) bool {
	if n.devMode && r.Header.Get("Authorization") == "" {
		return true
	}
	c, err := n.keys.Authenticate(r, time.Now())
	if err == nil {
		err = c.Check(room, auth.Admin)
	}
	if err != nil {
		rtc.WriteError(w, r, n.log, rtc.AuthError(err))
		return false
	}
	return true
}

// identityOf is the identity of an authorized admin request's token ("" without one: dev mode).
func (n *Node) identityOf(r *http.Request) string {
	c, err := n.keys.Authenticate(r, time.Now())
	if err != nil {
		return ""
	}
	return c.Identity
}
