package auth

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/golang-jwt/jwt/v5"

	"github.com/jetmedia/jetmedia/events"
)

// Grant is a right a token gives in its room.
type Grant string

// The grants a token may carry.
const (
	// Publish: send media (WHIP, SDK publish).
	Publish Grant = "publish"
	// Subscribe: receive media (WHEP, SDK subscribe).
	Subscribe Grant = "subscribe"
	// Data: send data messages in the room.
	Data Grant = "data"
	// Metadata: change one's own metadata after the join (the rooms SDK's update). Tokens with
	// Publish may too; a subscribe-only token needs it.
	Metadata Grant = "metadata"
	// Admin: read the room's state over the HTTP API and end or change any session of the room.
	Admin Grant = "admin"
)

// Grants lists every grant, in the order tools print them.
var Grants = []Grant{Publish, Subscribe, Data, Metadata, Admin}

// ParseGrants reads a comma-separated grant list ("publish,subscribe").
func ParseGrants(s string) ([]Grant, error) {
	var out []Grant
	for _, f := range strings.Split(s, ",") {
		g := Grant(strings.TrimSpace(f))
		if g == "" {
			continue
		}
		if !slices.Contains(Grants, g) {
			return nil, fmt.Errorf("unknown grant %q: use %s", g, joinGrants(Grants))
		}
		if !slices.Contains(out, g) {
			out = append(out, g)
		}
	}
	return out, nil
}

func joinGrants(gs []Grant) string {
	if len(gs) == 0 {
		return "none"
	}
	s := make([]string, len(gs))
	for i, g := range gs {
		s[i] = string(g)
	}
	return strings.Join(s, ",")
}

// AnyRoom as a token's room admits every room: for operators' and tools' tokens.
const AnyRoom = "*"

// ClockSkew is how far the clocks of the token's issuer and the server may disagree: exp, nbf
// and iat are checked with this much leeway.
const ClockSkew = 30 * time.Second

// MaxTokenBytes bounds a token; real ones are a few hundred bytes.
const MaxTokenBytes = 8 << 10

// Claims is what a verified token says.
type Claims struct {
	// Room the token is for, or AnyRoom.
	Room string
	// Identity is the peer's identity (the JWT sub): the actor of the events its sessions cause
	// and the owner of those sessions.
	Identity string
	// Name is the display name (optional).
	Name   string
	Grants []Grant
	// IssuedAt, NotBefore (zero: from IssuedAt) and ExpiresAt bound the token's validity.
	IssuedAt, NotBefore, ExpiresAt time.Time
	// KeyID is the key that signed the token (set by Verify).
	KeyID string
}

// NewClaims returns the claims of a token for identity in room with grants, valid from now for
// ttl.
func NewClaims(room, identity string, grants []Grant, now time.Time, ttl time.Duration) Claims {
	return Claims{Room: room, Identity: identity, Grants: grants, IssuedAt: now, ExpiresAt: now.Add(ttl)}
}

// Has reports whether the token carries grant g.
func (c Claims) Has(g Grant) bool { return slices.Contains(c.Grants, g) }

// Check says whether the token allows g in room: ErrWrongRoom or ErrMissingGrant (403) when not.
// An empty g checks the room only.
func (c Claims) Check(room string, g Grant) error {
	if c.Room != AnyRoom && c.Room != room {
		return fail(ErrWrongRoom, fmt.Sprintf("token is for room %q, not %q", c.Room, room))
	}
	if g != "" && !c.Has(g) {
		return fail(ErrMissingGrant, fmt.Sprintf("token lacks the %q grant (it has: %s)", g, joinGrants(c.Grants)))
	}
	return nil
}

// CheckOwner says whether the token may change a session owned by owner: its own identity's,
// or any with the admin grant. ErrNotOwner (403) when not.
func (c Claims) CheckOwner(owner string) error {
	if c.Identity == owner || c.Has(Admin) {
		return nil
	}
	return fail(ErrNotOwner, fmt.Sprintf("identity %q does not own this session: only its owner or an admin token may change it", c.Identity))
}

// validIdentity: identities are free text for applications (user ids, emails), but they end up
// in every event as the actor, so they are bounded and printable.
func validIdentity(s string, max int) bool {
	if s == "" || len(s) > max || !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return false
		}
	}
	return true
}

func (c Claims) validate() error {
	switch {
	case !validIdentity(c.Identity, 128):
		return fmt.Errorf("identity (sub) %q: want 1-128 printable characters", c.Identity)
	case c.Room != AnyRoom && !events.ValidID(c.Room):
		return fmt.Errorf("room %q: want 1-64 of A-Z a-z 0-9 _ - (or %q for every room)", c.Room, AnyRoom)
	case c.Name != "" && !validIdentity(c.Name, 128):
		return fmt.Errorf("name %q: want at most 128 printable characters", c.Name)
	}
	return nil
}

// Key is a named HS256 secret.
type Key struct {
	ID     string
	Secret []byte
}

// MinSecretBytes: HS256 wants a key at least as long as its hash.
const MinSecretBytes = 32

var kidPattern = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)

// ParseKey reads "kid=secret", the secret in base64 (standard or URL alphabet, padded or not).
func ParseKey(s string) (Key, error) {
	id, secret, ok := strings.Cut(strings.TrimSpace(s), "=")
	if !ok {
		return Key{}, errors.New(`auth key: want kid=base64secret`)
	}
	b, err := decodeSecret(secret)
	if err != nil {
		return Key{}, fmt.Errorf("auth key %q: secret is not base64: %w", id, err)
	}
	k := Key{ID: id, Secret: b}
	return k, k.Validate()
}

func decodeSecret(s string) ([]byte, error) {
	s = strings.TrimRight(s, "=")
	if strings.ContainsAny(s, "-_") {
		return base64.RawURLEncoding.DecodeString(s)
	}
	return base64.RawStdEncoding.DecodeString(s)
}

// Validate checks the key id and the secret's length.
func (k Key) Validate() error {
	if !kidPattern.MatchString(k.ID) {
		return fmt.Errorf("auth key id %q: want 1-64 of A-Z a-z 0-9 _ . -", k.ID)
	}
	if len(k.Secret) < MinSecretBytes {
		return fmt.Errorf("auth key %q: secret has %d bytes, want at least %d (openssl rand -base64 32)", k.ID, len(k.Secret), MinSecretBytes)
	}
	return nil
}

// String is the key in the form ParseKey reads. It holds the secret: do not log it.
func (k Key) String() string { return k.ID + "=" + base64.StdEncoding.EncodeToString(k.Secret) }

// GenerateKey returns a new random 32-byte key named id.
func GenerateKey(id string) Key {
	b := make([]byte, MinSecretBytes)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return Key{ID: id, Secret: b}
}

// Keyring verifies tokens signed with any of its keys and signs with the first.
type Keyring struct {
	keys   map[string][]byte
	signer Key
}

// NewKeyring returns a keyring of keys; the first one signs. To rotate, add the new key after
// the old one, roll it out, then move it first, and drop the old one once its tokens expired.
func NewKeyring(keys ...Key) (*Keyring, error) {
	if len(keys) == 0 {
		return nil, errors.New("auth: no keys")
	}
	k := &Keyring{keys: map[string][]byte{}, signer: keys[0]}
	for _, key := range keys {
		if err := key.Validate(); err != nil {
			return nil, err
		}
		if _, dup := k.keys[key.ID]; dup {
			return nil, fmt.Errorf("auth key id %q is configured twice", key.ID)
		}
		k.keys[key.ID] = slices.Clone(key.Secret)
	}
	return k, nil
}

// SigningKeyID is the id of the key Sign uses.
func (k *Keyring) SigningKeyID() string { return k.signer.ID }

// wireClaims is the JWT payload.
type wireClaims struct {
	Room   string  `json:"room"`
	Name   string  `json:"name,omitempty"`
	Grants []Grant `json:"grants"`
	jwt.RegisteredClaims
}

func numericDate(t time.Time) *jwt.NumericDate {
	if t.IsZero() {
		return nil
	}
	return jwt.NewNumericDate(t)
}

// Sign returns a token for c, signed with the keyring's first key.
func (k *Keyring) Sign(c Claims) (string, error) {
	if err := c.validate(); err != nil {
		return "", fmt.Errorf("auth: %w", err)
	}
	for _, g := range c.Grants {
		if !slices.Contains(Grants, g) {
			return "", fmt.Errorf("auth: unknown grant %q", g)
		}
	}
	if c.ExpiresAt.IsZero() {
		return "", errors.New("auth: a token needs an expiry")
	}
	if c.Grants == nil {
		c.Grants = []Grant{}
	}
	t := jwt.NewWithClaims(jwt.SigningMethodHS256, wireClaims{
		Room: c.Room, Name: c.Name, Grants: c.Grants,
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer: "jetmedia", Subject: c.Identity,
			IssuedAt: numericDate(c.IssuedAt), NotBefore: numericDate(c.NotBefore), ExpiresAt: numericDate(c.ExpiresAt),
		},
	})
	t.Header["kid"] = k.signer.ID
	return t.SignedString(k.signer.Secret)
}

// Verify checks a token's signature, algorithm (HS256 only), key id, validity window at now
// and required claims (sub, room, exp), and returns its claims. Errors are *Error.
func (k *Keyring) Verify(token string, now time.Time) (Claims, error) {
	if len(token) > MaxTokenBytes {
		return Claims{}, fail(ErrMalformed, fmt.Sprintf("token is malformed: longer than %d bytes", MaxTokenBytes))
	}
	var wc wireClaims
	var kid string
	p := jwt.NewParser(jwt.WithTimeFunc(func() time.Time { return now }), jwt.WithLeeway(ClockSkew),
		jwt.WithExpirationRequired(), jwt.WithIssuedAt())
	_, err := p.ParseWithClaims(token, &wc, func(t *jwt.Token) (any, error) {
		if t.Method != jwt.SigningMethodHS256 {
			return nil, fail(ErrAlgorithm, fmt.Sprintf("token is signed with %q; only HS256 is accepted", t.Method.Alg()))
		}
		raw, present := t.Header["kid"]
		id, isString := raw.(string)
		switch {
		case present && !isString:
			return nil, fail(ErrMalformed, "token is malformed: kid header is not a string")
		case !present && len(k.keys) == 1:
			// A token minted without a key id by another library: unambiguous with one key.
			kid = k.signer.ID
		case !present:
			return nil, fail(ErrUnknownKey, "token has no kid header and several keys are configured")
		default:
			kid = id
		}
		secret, ok := k.keys[kid]
		if !ok {
			return nil, fail(ErrUnknownKey, fmt.Sprintf("token is signed with key %q, which this server does not have", kid))
		}
		return secret, nil
	})
	if err != nil {
		return Claims{}, mapError(err, wc)
	}
	c := Claims{Room: wc.Room, Identity: wc.Subject, Name: wc.Name, Grants: wc.Grants, KeyID: kid}
	if wc.IssuedAt != nil {
		c.IssuedAt = wc.IssuedAt.UTC()
	}
	if wc.NotBefore != nil {
		c.NotBefore = wc.NotBefore.UTC()
	}
	c.ExpiresAt = wc.ExpiresAt.UTC() // required by the parser
	if err := c.validate(); err != nil {
		return Claims{}, fail(ErrClaims, "token claims are invalid: "+err.Error())
	}
	return c, nil
}

func mapError(err error, wc wireClaims) error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	switch {
	case errors.Is(err, jwt.ErrTokenMalformed):
		return fail(ErrMalformed, "token is malformed: "+strings.TrimPrefix(err.Error(), "token is malformed: "))
	case errors.Is(err, jwt.ErrTokenUnverifiable):
		// The parser knows no such algorithm (anything not HS256 is refused in the key lookup).
		return fail(ErrAlgorithm, "token's signing algorithm is not accepted; only HS256 is")
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return fail(ErrSignature, "token signature is invalid: it was not signed with the key its kid names")
	case errors.Is(err, jwt.ErrTokenExpired):
		return fail(ErrExpired, "token expired at "+formatDate(wc.ExpiresAt)+"; get a new one")
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		return fail(ErrNotYetValid, "token is not valid before "+formatDate(wc.NotBefore))
	case errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return fail(ErrNotYetValid, "token is issued in the future ("+formatDate(wc.IssuedAt)+"); check the issuer's clock")
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		return fail(ErrClaims, "token has no expiry (exp); tokens must expire")
	}
	return fail(ErrMalformed, "token is malformed: "+err.Error())
}

func formatDate(d *jwt.NumericDate) string {
	if d == nil {
		return "?"
	}
	return d.UTC().Format(time.RFC3339)
}

// BearerToken returns the token of an "Authorization: Bearer <token>" header (RFC 6750; WHIP
// and WHEP use it, RFC 9725 §4.4).
func BearerToken(r *http.Request) (string, error) {
	h := r.Header.Get("Authorization")
	if h == "" {
		return "", fail(ErrNoToken, "this endpoint needs a token: send Authorization: Bearer <token>")
	}
	scheme, tok, _ := strings.Cut(h, " ")
	tok = strings.TrimSpace(tok)
	if !strings.EqualFold(scheme, "Bearer") || tok == "" {
		return "", fail(ErrMalformed, "Authorization header must be \"Bearer <token>\"")
	}
	return tok, nil
}

// Authenticate verifies the request's bearer token at now.
func (k *Keyring) Authenticate(r *http.Request, now time.Time) (Claims, error) {
	tok, err := BearerToken(r)
	if err != nil {
		return Claims{}, err
	}
	return k.Verify(tok, now)
}

// Authorize verifies the request's bearer token at now and checks that it allows g in room (an
// empty g: any grant).
func (k *Keyring) Authorize(r *http.Request, room string, g Grant, now time.Time) (Claims, error) {
	c, err := k.Authenticate(r, now)
	if err == nil {
		err = c.Check(room, g)
	}
	if err != nil {
		return Claims{}, err
	}
	return c, nil
}

// Derive returns a secret for another purpose (label) made from the key: HMAC-SHA256 of the
// label under the key's secret, base64. Every node holding the key derives the same one, and
// it tells nothing of the key. The NATS links between nodes authenticate with one.
func (k Key) Derive(label string) string {
	m := hmac.New(sha256.New, k.Secret)
	m.Write([]byte("jetmedia/" + label))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}
