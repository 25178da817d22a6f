package sip

import (
	"crypto/hmac"
	"crypto/md5" //nolint:gosec // SIP digest (RFC 3261 §22.4) is MD5; phones speak nothing else
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/icholy/digest"
)

// Credential is one SIP account: a caller that answers the digest challenge with User and
// Password may call Room ("" or "*": any room).
type Credential struct {
	User, Password, Room string
}

// ParseCredential reads "user:password" or "user:password@room" (the --sip-user flag).
func ParseCredential(s string) (Credential, error) {
	user, rest, ok := strings.Cut(s, ":")
	if !ok || user == "" || rest == "" {
		return Credential{}, fmt.Errorf("sip user %q: want user:password[@room]", user)
	}
	c := Credential{User: user, Password: rest}
	if i := strings.LastIndexByte(rest, '@'); i >= 0 {
		c.Password, c.Room = rest[:i], rest[i+1:]
	}
	if c.Password == "" || strings.ContainsAny(user, "\"\\ \t\r\n") {
		return Credential{}, fmt.Errorf("sip user %q: empty password or a quote, backslash or space in the name", user)
	}
	return c, nil
}

// nonceTTL is how long a challenge's nonce is taken: a caller answers at once; an older nonce
// gets a fresh challenge (stale=true), not a refusal.
const nonceTTL = 5 * time.Minute

// maxAuthHeader bounds the Authorization header parsed.
const maxAuthHeader = 4096

// Digest checks SIP digest authentication (RFC 3261 §22, MD5, qop auth or none) against fixed
// credentials. Nonces are stateless (time + HMAC with a per-process key), so a flood of
// unauthenticated INVITEs costs no memory.
type Digest struct {
	realm string
	users map[string]Credential
	key   []byte
}

// NewDigest returns a checker for realm over creds.
func NewDigest(realm string, creds []Credential) (*Digest, error) {
	d := &Digest{realm: realm, users: map[string]Credential{}, key: make([]byte, 32)}
	if _, err := rand.Read(d.key); err != nil {
		return nil, fmt.Errorf("sip: nonce key: %w", err)
	}
	for _, c := range creds {
		if _, dup := d.users[c.User]; dup {
			return nil, fmt.Errorf("sip user %q given twice", c.User)
		}
		d.users[c.User] = c
	}
	return d, nil
}

// Challenge is the WWW-Authenticate value for a 401.
func (d *Digest) Challenge(now time.Time, stale bool) string {
	ts := strconv.FormatInt(now.Unix(), 16)
	s := fmt.Sprintf(`Digest realm="%s", nonce="%s.%s", algorithm=MD5, qop="auth"`, d.realm, ts, d.mac(ts))
	if stale {
		s += ", stale=true"
	}
	return s
}

func (d *Digest) mac(ts string) string {
	m := hmac.New(sha256.New, d.key)
	m.Write([]byte(ts))
	return hex.EncodeToString(m.Sum(nil)[:16])
}

// Errors of Check: ErrNoCredentials and ErrStaleNonce are answered with a challenge (401),
// ErrBadCredentials with 403.
var (
	ErrNoCredentials  = errors.New("sip: no credentials")
	ErrStaleNonce     = errors.New("sip: stale or foreign nonce")
	ErrBadCredentials = errors.New("sip: wrong user, password or room")
)

// Check verifies an Authorization header value ("" when absent) of a request with method for
// room, returning the account.
func (d *Digest) Check(now time.Time, header, method, room string) (Credential, error) {
	if header == "" {
		return Credential{}, ErrNoCredentials
	}
	if len(header) > maxAuthHeader {
		return Credential{}, fmt.Errorf("%w: header of %d bytes", ErrBadCredentials, len(header))
	}
	cr, err := digest.ParseCredentials(header)
	if err != nil {
		return Credential{}, fmt.Errorf("%w: %w", ErrBadCredentials, err)
	}
	if !d.nonceValid(now, cr.Nonce) {
		return Credential{}, ErrStaleNonce
	}
	c, ok := d.users[cr.Username]
	if !ok || cr.Realm != d.realm || (cr.Algorithm != "" && !strings.EqualFold(cr.Algorithm, "MD5")) {
		return Credential{}, fmt.Errorf("%w: user %q", ErrBadCredentials, cr.Username)
	}
	ha1 := md5hex(c.User + ":" + d.realm + ":" + c.Password)
	ha2 := md5hex(method + ":" + cr.URI)
	var want string
	switch cr.QOP {
	case "":
		want = md5hex(ha1 + ":" + cr.Nonce + ":" + ha2)
	case "auth":
		want = md5hex(ha1 + ":" + cr.Nonce + ":" + fmt.Sprintf("%08x", cr.Nc) + ":" + cr.Cnonce + ":auth:" + ha2)
	default:
		return Credential{}, fmt.Errorf("%w: qop %q", ErrBadCredentials, cr.QOP)
	}
	if subtle.ConstantTimeCompare([]byte(want), []byte(strings.ToLower(cr.Response))) != 1 {
		return Credential{}, fmt.Errorf("%w: user %q", ErrBadCredentials, cr.Username)
	}
	if c.Room != "" && c.Room != "*" && c.Room != room {
		return Credential{}, fmt.Errorf("%w: user %q may not call room %q", ErrBadCredentials, c.User, room)
	}
	return c, nil
}

func (d *Digest) nonceValid(now time.Time, nonce string) bool {
	ts, mac, ok := strings.Cut(nonce, ".")
	if !ok || len(ts) > 16 || !hmac.Equal([]byte(mac), []byte(d.mac(ts))) {
		return false
	}
	sec, err := strconv.ParseInt(ts, 16, 64)
	if err != nil {
		return false
	}
	age := now.Sub(time.Unix(sec, 0))
	return age >= -time.Minute && age <= nonceTTL
}

func md5hex(s string) string {
	h := md5.Sum([]byte(s)) //nolint:gosec // see import
	return hex.EncodeToString(h[:])
}
