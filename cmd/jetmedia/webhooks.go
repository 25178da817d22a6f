package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetmedia/jetmedia/egress/webhook"
	"github.com/jetmedia/jetmedia/projections/logtools"
)

// endpointsFlag is the repeatable --webhook flag; one value may also hold several endpoints
// separated by spaces (handy in JETMEDIA_WEBHOOKS).
type endpointsFlag struct{ cfg *webhook.Config }

func (f endpointsFlag) String() string {
	if f.cfg == nil {
		return ""
	}
	var s []string
	for _, e := range f.cfg.Endpoints {
		s = append(s, e.String())
	}
	return strings.Join(s, " ")
}

func (f endpointsFlag) Set(v string) error {
	for _, part := range strings.Fields(v) {
		e, err := webhook.ParseEndpoint(part)
		if err != nil {
			return err
		}
		f.cfg.Endpoints = append(f.cfg.Endpoints, e)
	}
	return nil
}

const webhookUsage = "webhook endpoint: url=https://…[,types=peer.joined|peer.left][,secret=whsec_…][,breaker=off|N|N/window]; repeatable"

// addWebhookFlags registers the webhook settings (and so JETMEDIA_WEBHOOK(S) and the other
// JETMEDIA_WEBHOOK_* variables where the command applies the environment).
func addWebhookFlags(fs *flag.FlagSet, cfg *webhook.Config) {
	fs.Var(endpointsFlag{cfg}, "webhook", webhookUsage)
	fs.Var(endpointsFlag{cfg}, "webhooks", "same as --webhook")
	fs.IntVar(&cfg.MaxAttempts, "webhook-max-attempts", cfg.MaxAttempts, "attempts per event before it is parked")
	fs.DurationVar(&cfg.InitialBackoff, "webhook-backoff", cfg.InitialBackoff, "wait after an event's first failed attempt; doubles per failure")
	fs.DurationVar(&cfg.MaxBackoff, "webhook-max-backoff", cfg.MaxBackoff, "longest wait between attempts")
	fs.DurationVar(&cfg.Timeout, "webhook-timeout", cfg.Timeout, "timeout of one webhook request")
	fs.IntVar(&cfg.Lanes, "webhook-lanes", cfg.Lanes, "rooms delivered in parallel per endpoint")
}

const webhooksUsage = `Usage: jetmedia webhooks parked [--endpoint URL|ID] [--json]
       jetmedia webhooks redrive [--endpoint URL|ID] [--webhook url=…,secret=…] [--json]

parked lists the events parked after their last attempt, oldest first. redrive sends them again
(oldest first; a room stops at its first failure so its events stay in order) and removes each
one its endpoint accepts. redrive needs the endpoints' configuration (their secrets): the same
--webhook flags or JETMEDIA_WEBHOOK(S) as serve.
`

func webhooksCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || (args[0] != "parked" && args[0] != "redrive") {
		fmt.Fprint(stderr, webhooksUsage)
		return errUsage
	}
	sub := args[0]
	fs := flag.NewFlagSet("webhooks "+sub, flag.ContinueOnError)
	var cf connFlags
	cf.register(fs)
	only := fs.String("endpoint", "", "only this endpoint (its URL or id)")
	asJSON := fs.Bool("json", false, "print JSON")
	cfg := webhook.Defaults()
	if sub == "redrive" {
		cfg.MaxAttempts = 3
		cfg.MaxBackoff = 5 * time.Second
		addWebhookFlags(fs, &cfg)
		if err := applyEnv(fs); err != nil {
			return err
		}
	}
	if err := parse(fs, args[1:], stderr); err != nil {
		return err
	}
	c, err := cf.open(ctx)
	if err != nil {
		return err
	}
	defer c.close()
	if sub == "redrive" {
		return webhooksRedrive(ctx, c.js, cfg, *only, *asJSON, stdout)
	}
	return webhooksParked(ctx, c.js, *only, *asJSON, stdout)
}

func webhooksRedrive(ctx context.Context, js jetstream.JetStream, cfg webhook.Config, only string, asJSON bool, stdout io.Writer) error {
	if len(cfg.Endpoints) == 0 {
		return fmt.Errorf("redrive: no endpoint configured: pass --webhook url=…,secret=… (as given to serve)")
	}
	res, err := webhook.Redrive(ctx, js, cfg, only)
	if err != nil {
		return err
	}
	if asJSON {
		return json.NewEncoder(stdout).Encode(res)
	}
	fmt.Fprintf(stdout, "delivered %d, failed %d, held behind a failure %d\n", res.Delivered, res.Failed, res.Held)
	for _, u := range res.Unconfigured {
		fmt.Fprintf(stdout, "not configured, left parked: %s\n", u)
	}
	if res.Failed > 0 {
		return fmt.Errorf("%d events still fail", res.Failed)
	}
	return nil
}

func webhooksParked(ctx context.Context, js jetstream.JetStream, only string, asJSON bool, stdout io.Writer) error {
	var list []webhook.Parked
	err := webhook.ListParked(ctx, js, "", func(p webhook.Parked) error {
		if only == "" || only == p.URL || only == p.EndpointID {
			list = append(list, p)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if asJSON {
		return logtools.WriteJSONLines(stdout, list)
	}
	if len(list) == 0 {
		fmt.Fprintln(stdout, "no parked events")
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PARKED AT\tENDPOINT\tROOM\tSEQ\tTYPE\tEVENT ID\tATTEMPTS\tLAST ERROR")
	for _, p := range list {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%d\t%s\n", p.ParkedAt.UTC().Format(time.RFC3339), p.URL, p.Room,
			p.EventSeq, p.Type, p.EventID, p.Attempts, p.Error)
	}
	return tw.Flush()
}
