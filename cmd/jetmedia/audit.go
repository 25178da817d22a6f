package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/jetmedia/jetmedia/events"
	"github.com/jetmedia/jetmedia/projections/logtools"
)

const auditUsage = "usage: jetmedia audit verify [--room R] [--json] [--anchor FILE [--anchor-key FILE]] [--nats URL | --data DIR]\n" +
	"       jetmedia audit anchor [--room R] [--out FILE] [--anchor-key FILE] [--nats URL | --data DIR]\n" +
	"       jetmedia audit who --identity I [--from T] [--to T] [--json] [--data DIR | --url URL --token T]\n" +
	"       jetmedia audit export --room R [--format jsonl|csv] [--nats URL | --data DIR]"

func auditCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	sub := ""
	if len(args) > 0 {
		sub = args[0]
	}
	switch sub {
	case "who":
		return auditWho(ctx, args[1:], stdout, stderr)
	case "export":
		return auditExport(ctx, args[1:], stdout, stderr)
	case "anchor":
		return auditAnchor(ctx, args[1:], stdout, stderr)
	case "verify":
		return auditVerify(ctx, args[1:], stdout, stderr)
	}
	fmt.Fprintln(stderr, auditUsage)
	return errUsage
}

func auditVerify(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("audit verify", flag.ContinueOnError)
	var cf connFlags
	cf.register(fs)
	var o logtools.VerifyOptions
	fs.StringVar(&o.Room, "room", "", "check this room only (default: every room)")
	fs.BoolVar(&o.JSON, "json", false, "print JSON: one report per room")
	anchorFile := fs.String("anchor", "", "also check the log against this anchor (from jetmedia audit anchor)")
	keyFile := fs.String("anchor-key", "", "file holding the key the anchor was signed with")
	if err := parse(fs, args, stderr); err != nil {
		return err
	}
	if o.Room != "" && !events.ValidID(o.Room) {
		return fmt.Errorf("--room %q: give a valid room id", o.Room)
	}
	if *anchorFile != "" {
		a, err := logtools.ReadAnchor(*anchorFile, *keyFile)
		if err != nil {
			return err
		}
		o.Anchor = &a
	} else if *keyFile != "" {
		return errors.New("--anchor-key needs --anchor")
	}
	c, err := cf.open(ctx)
	if err != nil {
		return err
	}
	defer c.close()
	return logtools.Verify(ctx, c.js, o, stdout, stderr)
}

// auditAnchor verifies the chains and writes their heads as an anchor.
func auditAnchor(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("audit anchor", flag.ContinueOnError)
	var cf connFlags
	cf.register(fs)
	var o logtools.AnchorOptions
	fs.StringVar(&o.Room, "room", "", "anchor this room only (default: every room)")
	fs.StringVar(&o.Out, "out", "", "write the anchor to this file (default: stdout)")
	keyFile := fs.String("anchor-key", "", "sign the anchor with HMAC-SHA256 under the key in this file")
	host, _ := os.Hostname()
	fs.StringVar(&o.Node, "node", host, "name recorded as the anchor's taker")
	if err := parse(fs, args, stderr); err != nil {
		return err
	}
	if o.Room != "" && !events.ValidID(o.Room) {
		return fmt.Errorf("--room %q: give a valid room id", o.Room)
	}
	var err error
	if o.Key, err = logtools.ReadAnchorKey(*keyFile); err != nil {
		return err
	}
	c, err := cf.open(ctx)
	if err != nil {
		return err
	}
	defer c.close()
	return logtools.WriteAnchor(ctx, c.js, o, stdout, stderr)
}
