package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"github.com/jetmedia/jetmedia/projections/logtools"
	"github.com/jetmedia/jetmedia/projections/readmodels"
)

const poisonUsage = `Usage: jetmedia poison list [--model M] [--json]
       jetmedia poison drop (--seq N | --all) [--model M]
       jetmedia poison redrive [--model M]   (with the node stopped)

The read models (the audit index and the analytics) park an event they still fail to apply
after their retries on the POISON stream (subject poison.readmodels) and go on with the next
one. list shows them, oldest first: the POISON sequence, when, which model, the event (its
sequence in the log, id, type and room) and the model's last error. drop removes parked events
once they are understood (--seq the POISON sequence list shows, or --all; --model limits --all
to one model).

redrive applies the parked events again, once their cause is fixed, by rebuilding the models
that parked them (or --model): it deletes the model from <data>/readmodels and drops its
parked events; the node, when it starts, folds the whole log into the model again, in order.
It does not apply a parked event on its own: the model's checkpoint is past it (events at or
below the checkpoint are skipped as redeliveries) and the models are folds, so the event
applied now, out of its order, could count wrongly (a join after its leave). redrive needs the
node stopped (it holds the database): run it with --data, not --nats. An event that still
fails is parked again.
`

func poisonCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || (args[0] != "list" && args[0] != "drop" && args[0] != "redrive") {
		fmt.Fprint(stderr, poisonUsage)
		return errUsage
	}
	o, err := parsePoison(args[0], args[1:], stderr)
	if err != nil {
		return err
	}
	c, err := o.cf.open(ctx)
	if err != nil {
		return err
	}
	defer c.close()
	switch o.sub {
	case "redrive":
		if !c.offline {
			return fmt.Errorf("poison redrive: a node runs on %s and holds its read models: stop it first", o.cf.dataDir)
		}
		return logtools.PoisonRedrive(ctx, c.js, filepath.Join(o.cf.dataDir, readmodels.Dir), o.model, stdout)
	case "drop":
		return logtools.PoisonDrop(ctx, c.js, o.seq, o.model, stdout)
	}
	return logtools.PoisonList(ctx, c.js, o.model, o.asJSON, stdout)
}

// poisonArgs is a parsed poison command line.
type poisonArgs struct {
	sub    string
	cf     connFlags
	model  string
	asJSON bool
	seq    uint64
	all    bool
}

func parsePoison(sub string, args []string, stderr io.Writer) (poisonArgs, error) {
	o := poisonArgs{sub: sub}
	fs := flag.NewFlagSet("poison "+sub, flag.ContinueOnError)
	o.cf.register(fs)
	fs.StringVar(&o.model, "model", "", "only this read model (audit or analytics)")
	if sub == "list" {
		fs.BoolVar(&o.asJSON, "json", false, "print JSON, one parked event a line")
	}
	if sub == "drop" {
		fs.Uint64Var(&o.seq, "seq", 0, "the POISON sequence of the parked event to drop")
		fs.BoolVar(&o.all, "all", false, "drop every parked event (of --model, if given)")
	}
	if err := parse(fs, args, stderr); err != nil {
		return o, err
	}
	if o.model != "" && !logtools.KnownModel(o.model) {
		return o, fmt.Errorf("poison %s: unknown model %q (the read models are %s)", sub, o.model, strings.Join(logtools.ModelNames(), ", "))
	}
	if sub == "drop" {
		if err := o.checkDrop(); err != nil {
			return o, err
		}
	}
	if sub == "redrive" && o.cf.natsURL != "" {
		return o, errors.New("poison redrive: rebuilds the read models in the node's data directory: stop the node and give --data, not --nats")
	}
	return o, nil
}

func (o poisonArgs) checkDrop() error {
	switch {
	case o.all && o.seq != 0:
		return errors.New("poison drop: give --seq or --all, not both")
	case !o.all && o.seq == 0:
		return errors.New("poison drop: give --seq N (a POISON sequence from jetmedia poison list) or --all")
	case o.seq != 0 && o.model != "":
		return errors.New("poison drop: --model goes with --all; --seq names one parked event already")
	}
	return nil
}
