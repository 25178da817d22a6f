package rtc

import (
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/jetmedia/jetmedia/pipeline/auth"
)

// AuthError turns a rejection of package auth into the HTTPError it maps to: 401 with a
// Bearer challenge (RFC 6750 §3; WHIP and WHEP use bearer tokens, RFC 9725 §4.4) when the
// request is not authenticated, 403 when its token does not allow what it asks. Other errors
// pass through unchanged.
func AuthError(err error) error {
	var ae *auth.Error
	if !errors.As(err, &ae) {
		return err
	}
	he := &HTTPError{Status: ae.Status(), Msg: ae.Msg}
	switch {
	case errors.Is(err, auth.ErrNoToken):
		he.Challenge = `Bearer realm="jetmedia"`
	case he.Status == http.StatusUnauthorized:
		he.Challenge = `Bearer realm="jetmedia", error="invalid_token", error_description="` + quoteSafe(ae.Msg) + `"`
	default:
		he.Challenge = `Bearer realm="jetmedia", error="insufficient_scope", error_description="` + quoteSafe(ae.Msg) + `"`
	}
	return he
}

// quoteSafe keeps a message inside an RFC 6750 quoted string (no quotes or backslashes).
func quoteSafe(s string) string { return strings.NewReplacer(`"`, `'`, `\`, `/`).Replace(s) }

// Authorizer checks bearer tokens: *auth.Keyring is the real one.
type Authorizer interface {
	Authorize(r *http.Request, room string, g auth.Grant, now time.Time) (auth.Claims, error)
}

// FindOwned finds the live session {session} of transport in room {room} named by req's path
// for a PATCH or DELETE, after checking req's bearer token: 401 without a valid one, 403 when
// it is for another room or its identity neither owns the session nor has the admin grant, 404
// when there is no such session. Nothing about a session is revealed to a request that fails
// the token check.
func (r *Registry) FindOwned(req *http.Request, a Authorizer, transport string) (*Session, error) {
	room, id := req.PathValue("room"), req.PathValue("session")
	c, err := a.Authorize(req, room, "", r.Now())
	if err != nil {
		return nil, AuthError(err)
	}
	s, err := r.Find(transport, room, id)
	if err != nil {
		return nil, err
	}
	if err := c.CheckOwner(s.Identity); err != nil {
		return nil, AuthError(err)
	}
	return s, nil
}
