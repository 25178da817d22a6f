package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jetmedia/jetmedia/cmd/jetmedia/app"
	"github.com/jetmedia/jetmedia/pipeline/eventlog"
	"github.com/jetmedia/jetmedia/projections"
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
	sub := args[0]
	fs := flag.NewFlagSet("poison "+sub, flag.ContinueOnError)
	var cf connFlags
	cf.register(fs)
	model := fs.String("model", "", "only this read model (audit or analytics)")
	asJSON := new(bool)
	if sub == "list" {
		fs.BoolVar(asJSON, "json", false, "print JSON, one parked event a line")
	}
	var seq uint64
	var all bool
	if sub == "drop" {
		fs.Uint64Var(&seq, "seq", 0, "the POISON sequence of the parked event to drop")
		fs.BoolVar(&all, "all", false, "drop every parked event (of --model, if given)")
	}
	if err := parse(fs, args[1:], stderr); err != nil {
		return err
	}
	if *model != "" && !knownModel(*model) {
		return fmt.Errorf("poison %s: unknown model %q (the read models are %s)", sub, *model, strings.Join(modelNames(), ", "))
	}
	if sub == "drop" {
		switch {
		case all && seq != 0:
			return errors.New("poison drop: give --seq or --all, not both")
		case !all && seq == 0:
			return errors.New("poison drop: give --seq N (a POISON sequence from jetmedia poison list) or --all")
		case seq != 0 && *model != "":
			return errors.New("poison drop: --model goes with --all; --seq names one parked event already")
		}
	}
	if sub == "redrive" && cf.natsURL != "" {
		return errors.New("poison redrive: rebuilds the read models in the node's data directory: stop the node and give --data, not --nats")
	}
	c, err := cf.open(ctx)
	if err != nil {
		return err
	}
	defer c.close()
	if sub == "redrive" {
		if !c.offline {
			return fmt.Errorf("poison redrive: a node runs on %s and holds its read models: stop it first", cf.dataDir)
		}
		return redrive(ctx, c, filepath.Join(cf.dataDir, app.ReadModelsDir), *model, stdout)
	}
	if sub == "drop" && seq != 0 {
		if err := eventlog.DropPoisoned(ctx, c.js, app.ReadModelsPoisonSubject, seq); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "dropped %d\n", seq)
		return nil
	}
	var list []eventlog.Poisoned
	err = eventlog.ListPoisoned(ctx, c.js, app.ReadModelsPoisonSubject, func(p eventlog.Poisoned) error {
		if *model == "" || *model == modelOf(p) {
			list = append(list, p)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if sub == "drop" {
		for _, p := range list {
			if err := eventlog.DropPoisoned(ctx, c.js, app.ReadModelsPoisonSubject, p.Seq); err != nil {
				return err
			}
		}
		fmt.Fprintf(stdout, "dropped %d\n", len(list))
		return nil
	}
	if *asJSON {
		out := make([]poisonedJSON, len(list))
		for i, p := range list {
			out[i] = poisonedJSON{Poisoned: p, Model: modelOf(p)}
		}
		return writeJSONLines(stdout, out)
	}
	if len(list) == 0 {
		fmt.Fprintln(stdout, "no poisoned events")
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SEQ\tPARKED AT\tMODEL\tROOM\tEVENT SEQ\tTYPE\tEVENT ID\tREASON")
	for _, p := range list {
		typ := p.Type
		if p.DecodeError != "" {
			typ = "(not an event)"
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%d\t%s\t%s\t%s\n", p.Seq, p.ParkedAt.UTC().Format(time.RFC3339), modelOf(p),
			p.Room, p.EventSeq, typ, p.EventID, p.Reason)
	}
	return tw.Flush()
}

// redrive deletes each model that parked events (or only model) from the database in dir and
// drops its parked events, the model first: a failure in between leaves parked events that
// the rebuild may park again (listed twice), never a parked event that is not applied again.
func redrive(ctx context.Context, c *conn, dir, model string, stdout io.Writer) error {
	parked := map[string][]uint64{}
	if model != "" {
		parked[model] = nil
	}
	err := eventlog.ListPoisoned(ctx, c.js, app.ReadModelsPoisonSubject, func(p eventlog.Poisoned) error {
		if m := modelOf(p); (model == "" || m == model) && knownModel(m) {
			parked[m] = append(parked[m], p.Seq)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if len(parked) == 0 {
		fmt.Fprintln(stdout, "no poisoned events: nothing to redrive")
		return nil
	}
	db, err := projections.OpenPebble(dir, nil, false)
	if err != nil {
		return err
	}
	for _, m := range slices.Sorted(maps.Keys(parked)) {
		if err := projections.DropModel(db, m); err != nil {
			return errors.Join(err, db.Close())
		}
		for _, seq := range parked[m] {
			if err := eventlog.DropPoisoned(ctx, c.js, app.ReadModelsPoisonSubject, seq); err != nil {
				return errors.Join(err, db.Close())
			}
		}
		fmt.Fprintf(stdout, "%s: model deleted (the node folds the log into it again when it starts), %d parked events dropped\n", m, len(parked[m]))
	}
	return db.Close()
}

// poisonedJSON is a line of poison list --json: the parked event and its model.
type poisonedJSON struct {
	eventlog.Poisoned
	Model string `json:"model"`
}

// modelOf is the read model whose handler parked p (app.runReadModels names the handlers
// readmodel-<model>).
func modelOf(p eventlog.Poisoned) string { return strings.TrimPrefix(p.Handler, "readmodel-") }

func modelNames() []string {
	var out []string
	for _, m := range app.ReadModels() {
		out = append(out, m.Name())
	}
	return out
}

func knownModel(name string) bool {
	for _, n := range modelNames() {
		if n == name {
			return true
		}
	}
	return false
}
