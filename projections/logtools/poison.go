package logtools

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetmedia/jetmedia/pipeline/eventlog"
	"github.com/jetmedia/jetmedia/projections"
	"github.com/jetmedia/jetmedia/projections/readmodels"
)

// PoisonList prints the events the read models parked (of model, or every model's): a table,
// or one JSON line each.
func PoisonList(ctx context.Context, js jetstream.JetStream, model string, asJSON bool, stdout io.Writer) error {
	list, err := poisoned(ctx, js, model)
	if err != nil {
		return err
	}
	if asJSON {
		out := make([]PoisonedJSON, len(list))
		for i, p := range list {
			out[i] = PoisonedJSON{Poisoned: p, Model: modelOf(p)}
		}
		return WriteJSONLines(stdout, out)
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

// PoisonDrop removes the parked event at POISON sequence seq, or, with seq 0, every parked
// event (of model, if given).
func PoisonDrop(ctx context.Context, js jetstream.JetStream, seq uint64, model string, stdout io.Writer) error {
	if seq != 0 {
		if err := eventlog.DropPoisoned(ctx, js, readmodels.PoisonSubject, seq); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "dropped %d\n", seq)
		return nil
	}
	list, err := poisoned(ctx, js, model)
	if err != nil {
		return err
	}
	for _, p := range list {
		if err := eventlog.DropPoisoned(ctx, js, readmodels.PoisonSubject, p.Seq); err != nil {
			return err
		}
	}
	fmt.Fprintf(stdout, "dropped %d\n", len(list))
	return nil
}

func poisoned(ctx context.Context, js jetstream.JetStream, model string) ([]eventlog.Poisoned, error) {
	var list []eventlog.Poisoned
	err := eventlog.ListPoisoned(ctx, js, readmodels.PoisonSubject, func(p eventlog.Poisoned) error {
		if model == "" || model == modelOf(p) {
			list = append(list, p)
		}
		return nil
	})
	return list, err
}

// PoisonRedrive deletes each model that parked events (or only model) from the database in dir
// and drops its parked events, the model first: a failure in between leaves parked events that
// the rebuild may park again (listed twice), never a parked event that is not applied again.
func PoisonRedrive(ctx context.Context, js jetstream.JetStream, dir, model string, stdout io.Writer) error {
	parked := map[string][]uint64{}
	if model != "" {
		parked[model] = nil
	}
	err := eventlog.ListPoisoned(ctx, js, readmodels.PoisonSubject, func(p eventlog.Poisoned) error {
		if m := modelOf(p); (model == "" || m == model) && KnownModel(m) {
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
			if err := eventlog.DropPoisoned(ctx, js, readmodels.PoisonSubject, seq); err != nil {
				return errors.Join(err, db.Close())
			}
		}
		fmt.Fprintf(stdout, "%s: model deleted (the node folds the log into it again when it starts), %d parked events dropped\n", m, len(parked[m]))
	}
	return db.Close()
}

// PoisonedJSON is a line of poison list --json: the parked event and its model.
type PoisonedJSON struct {
	eventlog.Poisoned
	Model string `json:"model"`
}

// modelOf is the read model whose handler parked p (readmodels names the handlers
// readmodel-<model>).
func modelOf(p eventlog.Poisoned) string { return strings.TrimPrefix(p.Handler, "readmodel-") }

// ModelNames are the names of the read models.
func ModelNames() []string {
	var out []string
	for _, m := range readmodels.Models() {
		out = append(out, m.Name())
	}
	return out
}

// KnownModel reports whether name is a read model's.
func KnownModel(name string) bool { return slices.Contains(ModelNames(), name) }

// WriteJSONLines writes one JSON value a line (the --json form of the list commands).
func WriteJSONLines[T any](w io.Writer, list []T) error {
	enc := json.NewEncoder(w)
	for _, v := range list {
		if err := enc.Encode(v); err != nil {
			return fmt.Errorf("write json: %w", err)
		}
	}
	return nil
}
