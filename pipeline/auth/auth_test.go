package auth_test

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/pipeline/auth"
)

var (
	t0     = time.Date(2026, 11, 5, 12, 0, 0, 0, time.UTC)
	keyA   = auth.Key{ID: "a", Secret: []byte("0123456789abcdef0123456789abcdef")}
	keyB   = auth.Key{ID: "b", Secret: []byte("fedcba9876543210fedcba9876543210")}
	keyBad = auth.Key{ID: "a", Secret: []byte("not-the-right-secret-for-key-a!!")}
)

func keyring(t testing.TB, keys ...auth.Key) *auth.Keyring {
	t.Helper()
	k, err := auth.NewKeyring(keys...)
	require.NoError(t, err)
	return k
}

// raw signs arbitrary claims and header with method and key, for tokens Sign refuses to make.
func raw(t testing.TB, m jwt.SigningMethod, key any, header map[string]any, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(m, claims)
	for k, v := range header {
		if v == nil {
			delete(tok.Header, k)
		} else {
			tok.Header[k] = v
		}
	}
	s, err := tok.SignedString(key)
	require.NoError(t, err)
	return s
}

func goodClaims() jwt.MapClaims {
	return jwt.MapClaims{"sub": "alice", "room": "r1", "grants": []string{"publish"},
		"iat": t0.Unix(), "exp": t0.Add(time.Hour).Unix()}
}

func with(c jwt.MapClaims, k string, v any) jwt.MapClaims {
	out := jwt.MapClaims{}
	for kk, vv := range c {
		out[kk] = vv
	}
	if v == nil {
		delete(out, k)
	} else {
		out[k] = v
	}
	return out
}

func b64(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

func TestSignVerifyRoundTrip(t *testing.T) {
	k := keyring(t, keyA, keyB)
	c := auth.NewClaims("r1", "alice@example.com", []auth.Grant{auth.Publish, auth.Data}, t0, time.Hour)
	c.Name = "Alice Ä."
	tok, err := k.Sign(c)
	require.NoError(t, err)
	got, err := k.Verify(tok, t0.Add(time.Minute))
	require.NoError(t, err)
	require.Equal(t, "a", got.KeyID)
	got.KeyID = ""
	require.Equal(t, c, got)

	// A keyring that has a's key second (rotation) still accepts it.
	got, err = keyring(t, keyB, keyA).Verify(tok, t0)
	require.NoError(t, err)
	require.Equal(t, "alice@example.com", got.Identity)

	// Header: HS256 and the signing key's id.
	hdr, _, _ := strings.Cut(tok, ".")
	b, err := base64.RawURLEncoding.DecodeString(hdr)
	require.NoError(t, err)
	var h map[string]any
	require.NoError(t, json.Unmarshal(b, &h))
	require.Equal(t, "HS256", h["alg"])
	require.Equal(t, "a", h["kid"])
}

func TestVerifyRejects(t *testing.T) {
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	k := keyring(t, keyA, keyB)
	kid := map[string]any{"kid": "a"}
	good := goodClaims()
	signed := raw(t, jwt.SigningMethodHS256, keyA.Secret, kid, good)
	parts := strings.Split(signed, ".")

	for _, tc := range []struct {
		name  string
		token string
		now   time.Time
		want  error
	}{
		{"expired", raw(t, jwt.SigningMethodHS256, keyA.Secret, kid, good), t0.Add(time.Hour + auth.ClockSkew + time.Second), auth.ErrExpired},
		{"not yet valid", raw(t, jwt.SigningMethodHS256, keyA.Secret, kid, with(good, "nbf", t0.Add(10*time.Minute).Unix())), t0, auth.ErrNotYetValid},
		{"issued in the future", raw(t, jwt.SigningMethodHS256, keyA.Secret, kid, with(good, "iat", t0.Add(10*time.Minute).Unix())), t0, auth.ErrNotYetValid},
		{"wrong signature", raw(t, jwt.SigningMethodHS256, keyBad.Secret, kid, good), t0, auth.ErrSignature},
		{"signed with b but kid a", raw(t, jwt.SigningMethodHS256, keyB.Secret, kid, good), t0, auth.ErrSignature},
		{"tampered payload", parts[0] + "." + b64(`{"sub":"mallory","room":"r1","grants":["admin"],"exp":9999999999}`) + "." + parts[2], t0, auth.ErrSignature},
		{"unknown kid", raw(t, jwt.SigningMethodHS256, keyA.Secret, map[string]any{"kid": "zz"}, good), t0, auth.ErrUnknownKey},
		{"no kid with two keys", raw(t, jwt.SigningMethodHS256, keyA.Secret, map[string]any{"kid": nil}, good), t0, auth.ErrUnknownKey},
		{"kid not a string", raw(t, jwt.SigningMethodHS256, keyA.Secret, map[string]any{"kid": 7}, good), t0, auth.ErrMalformed},
		{"alg none", raw(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, kid, good), t0, auth.ErrAlgorithm},
		{"alg none hand-made", b64(`{"alg":"none","kid":"a"}`) + "." + parts[1] + ".", t0, auth.ErrAlgorithm},
		{"alg RS256", raw(t, jwt.SigningMethodRS256, rsaKey, kid, good), t0, auth.ErrAlgorithm},
		{"alg HS512 with the right secret", raw(t, jwt.SigningMethodHS512, keyA.Secret, kid, good), t0, auth.ErrAlgorithm},
		{"alg unknown", b64(`{"alg":"XX999","kid":"a"}`) + "." + parts[1] + "." + parts[2], t0, auth.ErrAlgorithm},
		{"no exp", raw(t, jwt.SigningMethodHS256, keyA.Secret, kid, with(good, "exp", nil)), t0, auth.ErrClaims},
		{"no sub", raw(t, jwt.SigningMethodHS256, keyA.Secret, kid, with(good, "sub", nil)), t0, auth.ErrClaims},
		{"sub with a newline", raw(t, jwt.SigningMethodHS256, keyA.Secret, kid, with(good, "sub", "a\nb")), t0, auth.ErrClaims},
		{"no room", raw(t, jwt.SigningMethodHS256, keyA.Secret, kid, with(good, "room", nil)), t0, auth.ErrClaims},
		{"room not an id", raw(t, jwt.SigningMethodHS256, keyA.Secret, kid, with(good, "room", "a.b")), t0, auth.ErrClaims},
		{"room a number", raw(t, jwt.SigningMethodHS256, keyA.Secret, kid, with(good, "room", 5)), t0, auth.ErrMalformed},
		{"grants a string", raw(t, jwt.SigningMethodHS256, keyA.Secret, kid, with(good, "grants", "publish")), t0, auth.ErrMalformed},
		{"empty", "", t0, auth.ErrMalformed},
		{"garbage", "not a token", t0, auth.ErrMalformed},
		{"two segments", parts[0] + "." + parts[1], t0, auth.ErrMalformed},
		{"bad base64", parts[0] + ".!!!." + parts[2], t0, auth.ErrMalformed},
		{"header not JSON", b64("{") + "." + parts[1] + "." + parts[2], t0, auth.ErrMalformed},
		{"too long", strings.Repeat("a", auth.MaxTokenBytes+1), t0, auth.ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := k.Verify(tc.token, tc.now)
			require.ErrorIs(t, err, tc.want)
			require.Equal(t, http.StatusUnauthorized, auth.Status(err), "%v", err)
			var ae *auth.Error
			require.True(t, errors.As(err, &ae))
			require.NotEmpty(t, ae.Msg)
			t.Log(err)
		})
	}
}

func TestVerifyAccepts(t *testing.T) {
	good := goodClaims()
	kid := map[string]any{"kid": "a"}
	for _, tc := range []struct {
		name  string
		keys  []auth.Key
		token string
		now   time.Time
	}{
		{"within clock skew after exp", []auth.Key{keyA}, raw(t, jwt.SigningMethodHS256, keyA.Secret, kid, good), t0.Add(time.Hour + auth.ClockSkew/2)},
		{"within clock skew before nbf", []auth.Key{keyA}, raw(t, jwt.SigningMethodHS256, keyA.Secret, kid, with(good, "nbf", t0.Add(auth.ClockSkew/2).Unix())), t0},
		{"no kid with one key", []auth.Key{keyA}, raw(t, jwt.SigningMethodHS256, keyA.Secret, map[string]any{"kid": nil}, good), t0},
		{"no iat", []auth.Key{keyA}, raw(t, jwt.SigningMethodHS256, keyA.Secret, kid, with(good, "iat", nil)), t0},
		{"unknown grant is ignored, not granted", []auth.Key{keyA}, raw(t, jwt.SigningMethodHS256, keyA.Secret, kid, with(good, "grants", []string{"publish", "fly"})), t0},
		{"every room", []auth.Key{keyA}, raw(t, jwt.SigningMethodHS256, keyA.Secret, kid, with(good, "room", "*")), t0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := keyring(t, tc.keys...).Verify(tc.token, tc.now)
			require.NoError(t, err)
			require.Equal(t, "alice", c.Identity)
			require.NoError(t, c.Check("r1", auth.Publish))
		})
	}
}

func TestCheck(t *testing.T) {
	c := auth.NewClaims("r1", "alice", []auth.Grant{auth.Subscribe}, t0, time.Hour)
	for _, tc := range []struct {
		name  string
		c     auth.Claims
		room  string
		grant auth.Grant
		want  error
	}{
		{"allowed", c, "r1", auth.Subscribe, nil},
		{"room only", c, "r1", "", nil},
		{"wrong room", c, "r2", auth.Subscribe, auth.ErrWrongRoom},
		{"wrong room, any grant", c, "r2", "", auth.ErrWrongRoom},
		{"missing grant", c, "r1", auth.Publish, auth.ErrMissingGrant},
		{"admin is not publish", auth.NewClaims("r1", "op", []auth.Grant{auth.Admin}, t0, time.Hour), "r1", auth.Publish, auth.ErrMissingGrant},
		{"every room", auth.NewClaims(auth.AnyRoom, "op", []auth.Grant{auth.Admin}, t0, time.Hour), "r9", auth.Admin, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.c.Check(tc.room, tc.grant)
			if tc.want == nil {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, tc.want)
			require.Equal(t, http.StatusForbidden, auth.Status(err))
			t.Log(err)
		})
	}
	require.NoError(t, c.CheckOwner("alice"))
	err := c.CheckOwner("bob")
	require.ErrorIs(t, err, auth.ErrNotOwner)
	require.Equal(t, http.StatusForbidden, auth.Status(err))
	admin := auth.NewClaims("r1", "op", []auth.Grant{auth.Admin}, t0, time.Hour)
	require.NoError(t, admin.CheckOwner("bob"))
}

func TestAuthorize(t *testing.T) {
	k := keyring(t, keyA)
	tok, err := k.Sign(auth.NewClaims("r1", "alice", []auth.Grant{auth.Publish}, t0, time.Hour))
	require.NoError(t, err)
	for _, tc := range []struct {
		name   string
		header string
		room   string
		grant  auth.Grant
		want   error
		status int
	}{
		{"ok", "Bearer " + tok, "r1", auth.Publish, nil, 0},
		{"scheme is case-insensitive", "bearer " + tok, "r1", auth.Publish, nil, 0},
		{"no header", "", "r1", auth.Publish, auth.ErrNoToken, 401},
		{"basic", "Basic YTpi", "r1", auth.Publish, auth.ErrMalformed, 401},
		{"bearer without token", "Bearer ", "r1", auth.Publish, auth.ErrMalformed, 401},
		{"wrong room", "Bearer " + tok, "r2", auth.Publish, auth.ErrWrongRoom, 403},
		{"missing grant", "Bearer " + tok, "r1", auth.Subscribe, auth.ErrMissingGrant, 403},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodPost, "/whip/"+tc.room, nil)
			if tc.header != "" {
				r.Header.Set("Authorization", tc.header)
			}
			c, err := k.Authorize(r, tc.room, tc.grant, t0)
			if tc.want == nil {
				require.NoError(t, err)
				require.Equal(t, "alice", c.Identity)
				return
			}
			require.ErrorIs(t, err, tc.want)
			require.Equal(t, tc.status, auth.Status(err))
			require.Equal(t, auth.Claims{}, c)
		})
	}
}

func TestKeys(t *testing.T) {
	secret := base64.StdEncoding.EncodeToString(keyA.Secret)
	for _, tc := range []struct {
		in   string
		want string // error substring; "" for success
	}{
		{"k1=" + secret, ""},
		{"k1=" + strings.TrimRight(secret, "="), ""},
		{"k1=" + base64.RawURLEncoding.EncodeToString([]byte("\xfb\xff0123456789abcdef0123456789abcd")), ""},
		{"k1", "want kid=base64secret"},
		{"=" + secret, "auth key id"},
		{"k 1=" + secret, "auth key id"},
		{"k1=c2hvcnQ=", "at least 32"},
		{"k1=not base64!", "not base64"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			k, err := auth.ParseKey(tc.in)
			if tc.want != "" {
				require.ErrorContains(t, err, tc.want)
				return
			}
			require.NoError(t, err)
			back, err := auth.ParseKey(k.String())
			require.NoError(t, err)
			require.Equal(t, k, back)
		})
	}
	_, err := auth.NewKeyring(keyA, keyA)
	require.ErrorContains(t, err, "twice")
	_, err = auth.NewKeyring()
	require.Error(t, err)
	g := auth.GenerateKey("dev")
	require.NoError(t, g.Validate())
	require.NotEqual(t, g.Secret, auth.GenerateKey("dev").Secret)
}

func TestSignRefuses(t *testing.T) {
	k := keyring(t, keyA)
	for name, c := range map[string]auth.Claims{
		"no identity":   auth.NewClaims("r1", "", nil, t0, time.Hour),
		"bad room":      auth.NewClaims("r.1", "a", nil, t0, time.Hour),
		"no expiry":     {Room: "r1", Identity: "a"},
		"unknown grant": auth.NewClaims("r1", "a", []auth.Grant{"fly"}, t0, time.Hour),
	} {
		_, err := k.Sign(c)
		require.Error(t, err, name)
	}
}

func TestParseGrants(t *testing.T) {
	g, err := auth.ParseGrants(" publish, subscribe,publish,,")
	require.NoError(t, err)
	require.Equal(t, []auth.Grant{auth.Publish, auth.Subscribe}, g)
	_, err = auth.ParseGrants("publish,fly")
	require.ErrorContains(t, err, `unknown grant "fly"`)
}
