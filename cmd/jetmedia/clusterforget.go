package main

import (
	"context"
	"errors"
	"flag"
	"io"
	"os"
	"os/user"
	"strings"

	"github.com/jetmedia/jetmedia/projections/logtools"
)

// clusterForgetCmd: `jetmedia cluster forget <edge>` (presence.Forget), through a node's HTTP
// API with --url, else through NATS.
func clusterForgetCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("cluster forget", flag.ContinueOnError)
	var cf connFlags
	cf.register(fs)
	var o logtools.ForgetOptions
	fs.StringVar(&o.Domain, "domain", "", "the edge's JetStream domain (default edge-<edge>, as --js-domain's)")
	fs.BoolVar(&o.Yes, "yes", false, "do not ask for confirmation")
	fs.BoolVar(&o.JSON, "json", false, "print JSON")
	fs.StringVar(&o.By, "by", whoami(), "who decides (recorded with the forget; through --url, the token's identity)")
	fs.StringVar(&o.URL, "url", os.Getenv("JETMEDIA_URL"), "ask a region node's HTTP API instead (env JETMEDIA_URL)")
	fs.StringVar(&o.Token, "token", os.Getenv("JETMEDIA_TOKEN"), "token with the admin grant for every room, for --url (env JETMEDIA_TOKEN)")
	var err error
	if o.Node, err = edgeArg(fs, args, stderr); err != nil {
		return err
	}
	if !logtools.ConfirmForget(o, os.Stdin, stdout) {
		return errors.New("not confirmed: nothing done")
	}
	if o.URL != "" {
		return logtools.ForgetHTTP(ctx, o, stdout)
	}
	c, err := cf.open(ctx)
	if err != nil {
		return err
	}
	defer c.close()
	return logtools.Forget(ctx, c.js, o, stdout)
}

// clusterUnforgetCmd: `jetmedia cluster unforget <edge>` (presence.Unforget).
func clusterUnforgetCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("cluster unforget", flag.ContinueOnError)
	var cf connFlags
	cf.register(fs)
	domain := fs.String("domain", "", "the edge's JetStream domain (default edge-<edge>)")
	node, err := edgeArg(fs, args, stderr)
	if err != nil {
		return err
	}
	c, err := cf.open(ctx)
	if err != nil {
		return err
	}
	defer c.close()
	return logtools.Unforget(ctx, c.js, node, *domain, stdout)
}

// edgeArg parses "<edge> [flags]" or "[flags] <edge>".
func edgeArg(fs *flag.FlagSet, args []string, stderr io.Writer) (string, error) {
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		return args[0], parse(fs, args[1:], stderr)
	}
	fs.SetOutput(stderr)
	if err := fs.Parse(args); err != nil {
		return "", errUsage
	}
	if fs.NArg() != 1 {
		return "", errors.New(fs.Name() + ": name one edge: jetmedia " + fs.Name() + " <edge> [flags]")
	}
	return fs.Arg(0), nil
}

// whoami is the operator's name for the record: user@host.
func whoami() string {
	name := "unknown"
	if u, err := user.Current(); err == nil {
		name = u.Username
	}
	host, _ := os.Hostname()
	return name + "@" + host
}
