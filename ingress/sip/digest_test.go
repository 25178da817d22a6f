package sip

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/icholy/digest"
	"github.com/stretchr/testify/require"
)

// answer computes a client's Authorization for a challenge the way a phone does (icholy/digest,
// the client side sipgo itself uses).
func answer(t *testing.T, chal, user, pass, uri string) string {
	t.Helper()
	c, err := digest.ParseChallenge(chal)
	require.NoError(t, err)
	cr, err := digest.Digest(c, digest.Options{Method: "INVITE", URI: uri, Username: user, Password: pass, Count: 1, Cnonce: "abc"})
	require.NoError(t, err)
	return cr.String()
}

func TestDigest(t *testing.T) {
	d, err := NewDigest("jetmedia", []Credential{{User: "alice", Password: "s3cret"}, {User: "bob", Password: "pw", Room: "lobby"}})
	require.NoError(t, err)
	chal := d.Challenge(t0, false)
	_, err = d.Check(t0, "", "INVITE", "r1")
	require.ErrorIs(t, err, ErrNoCredentials)

	c, err := d.Check(t0.Add(time.Second), answer(t, chal, "alice", "s3cret", "sip:r1@host"), "INVITE", "r1")
	require.NoError(t, err)
	require.Equal(t, "alice", c.User)

	_, err = d.Check(t0, answer(t, chal, "alice", "wrong", "sip:r1@host"), "INVITE", "r1")
	require.ErrorIs(t, err, ErrBadCredentials)
	_, err = d.Check(t0, answer(t, chal, "mallory", "s3cret", "sip:r1@host"), "INVITE", "r1")
	require.ErrorIs(t, err, ErrBadCredentials)
	_, err = d.Check(t0, answer(t, chal, "bob", "pw", "sip:r1@host"), "INVITE", "r1")
	require.ErrorIs(t, err, ErrBadCredentials, "bob may call lobby only")
	_, err = d.Check(t0, answer(t, chal, "bob", "pw", "sip:lobby@host"), "INVITE", "lobby")
	require.NoError(t, err)

	_, err = d.Check(t0.Add(6*time.Minute), answer(t, chal, "alice", "s3cret", "sip:r1@host"), "INVITE", "r1")
	require.ErrorIs(t, err, ErrStaleNonce)
	other, _ := NewDigest("jetmedia", nil)
	_, err = d.Check(t0, answer(t, other.Challenge(t0, false), "alice", "s3cret", "sip:r1@host"), "INVITE", "r1")
	require.ErrorIs(t, err, ErrStaleNonce, "a nonce this process did not make")
	_, err = d.Check(t0, "Digest "+strings.Repeat("x", 5000), "INVITE", "r1")
	require.ErrorIs(t, err, ErrBadCredentials)
	_, err = d.Check(t0, `Digest username="alice", nonce="zz"`, "INVITE", "r1")
	require.Error(t, err)
}

func TestParseCredential(t *testing.T) {
	for in, want := range map[string]Credential{
		"alice:pw":       {User: "alice", Password: "pw"},
		"bob:p@ss@lobby": {User: "bob", Password: "p@ss", Room: "lobby"},
		"carol:pw@*":     {User: "carol", Password: "pw", Room: "*"},
	} {
		got, err := ParseCredential(in)
		require.NoError(t, err, in)
		require.Equal(t, want, got, in)
	}
	for _, bad := range []string{"", "alice", ":pw", "alice:", "al ice:pw", "a:@room"} {
		_, err := ParseCredential(bad)
		require.Error(t, err, fmt.Sprintf("%q", bad))
	}
}

// FuzzDigestCheck: any Authorization header is refused or accepted, never a panic.
func FuzzDigestCheck(f *testing.F) {
	f.Add(`Digest username="alice", realm="jetmedia", nonce="1.2", uri="sip:r@h", response="00", qop=auth, nc=00000001, cnonce="x"`)
	f.Add(`Digest`)
	f.Add(`Basic YWxhZGRpbjpvcGVuc2VzYW1l`)
	d, _ := NewDigest("jetmedia", []Credential{{User: "alice", Password: "pw"}})
	f.Fuzz(func(t *testing.T, h string) {
		if _, err := d.Check(t0, h, "INVITE", "r"); err == nil {
			t.Fatalf("accepted %q", h)
		}
	})
}
