package main

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/cmd/jetmedia/app"
	"github.com/jetmedia/jetmedia/pipeline/auth"
)

func TestTokenCommand(t *testing.T) {
	out, err := runCLI(t, "token", "--new-key", "k1")
	require.NoError(t, err)
	key, err := auth.ParseKey(strings.TrimSpace(out))
	require.NoError(t, err)
	require.Equal(t, "k1", key.ID)
	other := auth.GenerateKey("k0")

	out, err = runCLI(t, "token", "--room", "r1", "--identity", "alice", "--name", "Alice",
		"--grants", "subscribe,data", "--ttl", "10m", "--auth-key", key.String()+","+other.String())
	require.NoError(t, err)
	ring, err := auth.NewKeyring(other, key)
	require.NoError(t, err)
	c, err := ring.Verify(strings.TrimSpace(out), time.Now())
	require.NoError(t, err)
	require.Equal(t, "k1", c.KeyID, "the first key given signs")
	require.Equal(t, "r1", c.Room)
	require.Equal(t, "alice", c.Identity)
	require.Equal(t, "Alice", c.Name)
	require.Equal(t, []auth.Grant{auth.Subscribe, auth.Data}, c.Grants)
	require.WithinDuration(t, time.Now().Add(10*time.Minute), c.ExpiresAt, 5*time.Second)

	// The key may come from the environment, as for serve.
	t.Setenv("JETMEDIA_AUTH_KEYS", key.String())
	out, err = runCLI(t, "token", "--room", "*", "--identity", "ops", "--grants", "admin")
	require.NoError(t, err)
	c, err = ring.Verify(strings.TrimSpace(out), time.Now())
	require.NoError(t, err)
	require.NoError(t, c.Check("any-room", auth.Admin))
	t.Setenv("JETMEDIA_AUTH_KEYS", "")

	for name, args := range map[string][]string{
		"no key":         {"token", "--room", "r1", "--identity", "a"},
		"no room":        {"token", "--identity", "a", "--auth-key", key.String()},
		"bad grant":      {"token", "--room", "r1", "--identity", "a", "--grants", "fly", "--auth-key", key.String()},
		"short secret":   {"token", "--room", "r1", "--identity", "a", "--auth-key", "k=c2hvcnQ="},
		"bad room":       {"token", "--room", "a.b", "--identity", "a", "--auth-key", key.String()},
		"negative ttl":   {"token", "--room", "r1", "--identity", "a", "--ttl", "-1h", "--auth-key", key.String()},
		"stray argument": {"token", "--room", "r1", "--identity", "a", "--auth-key", key.String(), "extra"},
	} {
		_, err := runCLI(t, args...)
		require.Error(t, err, name)
	}
}

// TestServeAuthKeyFlags: --auth-key and JETMEDIA_AUTH_KEYS reach the node's config, and the
// usage text never shows a secret.
func TestServeAuthKeyFlags(t *testing.T) {
	k1, k2 := auth.GenerateKey("one"), auth.GenerateKey("two")
	t.Setenv("JETMEDIA_AUTH_KEYS", k1.String())
	cfg, logLevel := app.Defaults(), "info"
	fs := serveFlags(&cfg, &logLevel)
	require.NoError(t, applyEnv(fs))
	require.NoError(t, fs.Parse([]string{"--auth-key", k2.String()}))
	require.Equal(t, []auth.Key{k1, k2}, cfg.AuthKeys)
	require.NotContains(t, fs.Lookup("auth-key").Value.String(), k1.String()[4:])
}
