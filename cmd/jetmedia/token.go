package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/jetmedia/jetmedia/pipeline/auth"
)

// authKeysFlag collects auth keys, kid=base64secret, from a repeatable, comma-separated flag.
// Like --routes, values from the environment and the command line add up.
type authKeysFlag struct{ keys *[]auth.Key }

// String never shows secrets: flag's usage output prints it as the default.
func (f authKeysFlag) String() string {
	if f.keys == nil {
		return ""
	}
	ids := make([]string, len(*f.keys))
	for i, k := range *f.keys {
		ids[i] = k.ID + "=…"
	}
	return strings.Join(ids, ",")
}

func (f authKeysFlag) Set(s string) error {
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v == "" {
			continue
		}
		k, err := auth.ParseKey(v)
		if err != nil {
			return err
		}
		*f.keys = append(*f.keys, k)
	}
	return nil
}

const authKeyUsage = "auth key kid=base64secret (repeatable or comma-separated; the first signs); none: dev mode"

// addAuthKeyFlags registers --auth-key and its plural --auth-keys, so that both
// JETMEDIA_AUTH_KEY and JETMEDIA_AUTH_KEYS reach it through applyEnv.
func addAuthKeyFlags(fs *flag.FlagSet, keys *[]auth.Key) {
	fs.Var(authKeysFlag{keys}, "auth-key", authKeyUsage)
	fs.Var(authKeysFlag{keys}, "auth-keys", "same as --auth-key")
}

// authKeysFromEnv reads JETMEDIA_AUTH_KEYS and JETMEDIA_AUTH_KEY, for commands that do not
// take every flag from the environment.
func authKeysFromEnv(keys *[]auth.Key) error {
	var errs []error
	for _, name := range []string{envPrefix + "AUTH_KEYS", envPrefix + "AUTH_KEY"} {
		if v, ok := os.LookupEnv(name); ok {
			if err := (authKeysFlag{keys}).Set(v); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", name, err))
			}
		}
	}
	return errors.Join(errs...)
}

const tokenUsage = `Usage: jetmedia token --room R --identity I [--name N] [--grants publish,subscribe] [--ttl 1h]
                      [--auth-key kid=base64secret]
       jetmedia token --new-key KID

Prints a token signed with the first configured key (--auth-key, or JETMEDIA_AUTH_KEYS as for
serve). Grants: publish, subscribe, data, admin. --room '*' makes a token for every room (for
the admin API). --new-key prints a fresh random key to configure with --auth-key.
`

func tokenCmd(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("token", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, tokenUsage); fs.PrintDefaults() }
	var keys []auth.Key
	room := fs.String("room", "", "room the token is for (* for every room)")
	identity := fs.String("identity", "", "the peer's identity (the JWT sub); the actor of its events")
	name := fs.String("name", "", "display name")
	grants := fs.String("grants", "publish,subscribe", "comma-separated grants: publish, subscribe, data, admin")
	ttl := fs.Duration("ttl", time.Hour, "how long the token is valid")
	newKey := fs.String("new-key", "", "print a new random key with this id and exit")
	addAuthKeyFlags(fs, &keys)
	fs.Var(authKeysFlag{&keys}, "key", "same as --auth-key")
	if err := authKeysFromEnv(&keys); err != nil {
		return err
	}
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("token takes no arguments, got %q", fs.Args())
	}
	if *newKey != "" {
		k := auth.GenerateKey(*newKey)
		if err := k.Validate(); err != nil {
			return err
		}
		_, err := fmt.Fprintln(stdout, k.String())
		return err
	}
	if *room == "" || *identity == "" {
		fmt.Fprint(stderr, "jetmedia token: --room and --identity are required\n\n")
		fs.Usage()
		return errUsage
	}
	if len(keys) == 0 {
		return errors.New("no auth key: pass --auth-key kid=base64secret or set JETMEDIA_AUTH_KEYS (a node in dev mode mints tokens at GET /dev/token instead)")
	}
	if *ttl <= 0 {
		return fmt.Errorf("ttl %s: want a positive duration", *ttl)
	}
	gs, err := auth.ParseGrants(*grants)
	if err != nil {
		return err
	}
	ring, err := auth.NewKeyring(keys...)
	if err != nil {
		return err
	}
	c := auth.NewClaims(*room, *identity, gs, time.Now(), *ttl)
	c.Name = *name
	tok, err := ring.Sign(c)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(stdout, tok)
	return err
}
