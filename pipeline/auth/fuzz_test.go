package auth_test

import (
	"errors"
	"testing"
	"time"

	"github.com/jetmedia/jetmedia/pipeline/auth"
)

// FuzzVerify: no input makes Verify panic, every rejection is an *auth.Error with a 401, and
// whatever is accepted has valid claims.
func FuzzVerify(f *testing.F) {
	k, err := auth.NewKeyring(keyA, keyB)
	if err != nil {
		f.Fatal(err)
	}
	tok, err := k.Sign(auth.NewClaims("r1", "alice", []auth.Grant{auth.Publish}, t0, time.Hour))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(tok)
	f.Add("")
	f.Add("a.b.c")
	f.Add("eyJhbGciOiJub25lIn0.eyJzdWIiOiJhIn0.")
	f.Fuzz(func(t *testing.T, s string) {
		c, err := k.Verify(s, t0)
		if err != nil {
			var ae *auth.Error
			if !errors.As(err, &ae) || ae.Status() != 401 || ae.Msg == "" {
				t.Fatalf("rejection %v is not a 401 auth.Error", err)
			}
			return
		}
		if c.Identity == "" || c.Room == "" || c.ExpiresAt.IsZero() {
			t.Fatalf("accepted %q with claims %+v", s, c)
		}
	})
}
