package auth

import (
	"errors"
	"net/http"
)

// Sentinel errors callers test with errors.Is. Every error Verify, Authorize and Check return
// is an *Error wrapping one of them.
var (
	// ErrNoToken: the request carries no bearer token (401).
	ErrNoToken = errors.New("auth: no bearer token")
	// ErrMalformed: the token is not a well-formed JWT (401).
	ErrMalformed = errors.New("auth: malformed token")
	// ErrAlgorithm: the token is signed with another algorithm than HS256, or with none (401).
	ErrAlgorithm = errors.New("auth: signing algorithm not accepted")
	// ErrUnknownKey: the token's key id names no configured key (401).
	ErrUnknownKey = errors.New("auth: unknown key id")
	// ErrSignature: the signature does not match (401).
	ErrSignature = errors.New("auth: invalid signature")
	// ErrExpired: the token's exp has passed (401).
	ErrExpired = errors.New("auth: token expired")
	// ErrNotYetValid: the token's nbf (or iat) is in the future (401).
	ErrNotYetValid = errors.New("auth: token not valid yet")
	// ErrClaims: a required claim is missing or invalid: sub, room, exp, grants (401).
	ErrClaims = errors.New("auth: invalid claims")
	// ErrWrongRoom: a valid token for another room (403).
	ErrWrongRoom = errors.New("auth: token is for another room")
	// ErrMissingGrant: a valid token without the grant the request needs (403).
	ErrMissingGrant = errors.New("auth: missing grant")
	// ErrNotOwner: a valid token whose identity does not own the session (403).
	ErrNotOwner = errors.New("auth: not the session's owner")
)

// Error is a rejection: Kind is one of the sentinels, Msg says what is wrong in words a client
// developer can act on.
type Error struct {
	Kind error
	Msg  string
}

func (e *Error) Error() string { return e.Msg }
func (e *Error) Unwrap() error { return e.Kind }

// Status is the HTTP status of the rejection: 401 when the request is not authenticated (no
// token, or one that cannot be trusted or has lapsed), 403 when it is but is not allowed.
func (e *Error) Status() int {
	switch e.Kind {
	case ErrWrongRoom, ErrMissingGrant, ErrNotOwner:
		return http.StatusForbidden
	}
	return http.StatusUnauthorized
}

// Status returns the HTTP status of an auth error (401 or 403), or 0 when err is not one.
func Status(err error) int {
	var e *Error
	if errors.As(err, &e) {
		return e.Status()
	}
	return 0
}

func fail(kind error, msg string) *Error { return &Error{Kind: kind, Msg: msg} }
