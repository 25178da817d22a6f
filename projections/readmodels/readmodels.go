package readmodels

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/cockroachdb/pebble/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetmedia/jetmedia/pipeline/eventlog"
	"github.com/jetmedia/jetmedia/projections"
)

// Dir is where a node keeps its pebble read models, inside its data directory.
const Dir = "readmodels"

// Durable is the durable consumer that feeds the read model named model on node.
// Each node keeps its own pebble database, so each needs all the events: in a cluster, nodes
// sharing one durable would split the log between their databases.
func Durable(node, model string) string { return "rm-" + node + "-" + model }

// PoisonSubject is where the read models park the events they cannot apply.
var PoisonSubject = eventlog.PoisonSubject("readmodels")

// Models lists the pebble read models every node keeps.
func Models() []projections.Model {
	return []projections.Model{projections.AuditIndex{}, projections.Analytics{}}
}

// Runner runs the pebble read models: one pebble database, one router with the poison
// queue, one durable consumer per model. It owns the database and the router.
type Runner struct {
	db      *pebble.DB
	js      jetstream.JetStream
	node    string
	router  *message.Router
	runners []*projections.PebbleRunner
	log     *slog.Logger
	wg      sync.WaitGroup
	once    sync.Once
	err     error
}

// Config says where the read models of one node live and what feeds them.
type Config struct {
	Conn    *nats.Conn          // the node's control connection, for the durable consumers
	JS      jetstream.JetStream // the node's JetStream
	Node    string              // the node's name, part of each consumer's name
	DataDir string              // the node's data directory; the models live in <DataDir>/readmodels
	Storage eventlog.StorageConfig
	Logger  *slog.Logger
}

// Start opens <data>/readmodels and runs a runner per model.
func Start(ctx context.Context, cfg Config) (*Runner, error) {
	return runReadModels(ctx, cfg.Conn, cfg.JS, cfg.Node, filepath.Join(cfg.DataDir, Dir), cfg.Storage, cfg.Logger)
}

func runReadModels(ctx context.Context, nc *nats.Conn, js jetstream.JetStream, node, dir string, sc eventlog.StorageConfig, log *slog.Logger) (_ *Runner, err error) {
	if err := eventlog.DeclarePoison(ctx, js, sc); err != nil {
		return nil, err
	}
	db, err := projections.OpenPebble(dir, nil, false)
	if err != nil {
		return nil, err
	}
	rm := &Runner{db: db, js: js, node: node, log: log}
	defer func() {
		if err != nil {
			_ = db.Close()
		}
	}()
	rm.router, err = eventlog.NewConsumerRouter(eventlog.ConsumerRouterConfig{
		Poison: eventlog.NewPoisonPublisher(js), PoisonTopic: PoisonSubject, Logger: log,
	})
	if err != nil {
		return nil, err
	}
	for _, m := range Models() {
		cp, err := resetConsumer(ctx, js, db, Durable(node, m.Name()), m.Name())
		if err != nil {
			return nil, err
		}
		sub, err := eventlog.NewEventSubscriber(nc, eventlog.EventSubscriberConfig{
			Durable: Durable(node, m.Name()), Filter: eventlog.EventsSubjects, Logger: log,
			StartSeq: cp + 1, MaxAckPending: projections.RunnerInFlight, AckWait: 60 * time.Second,
		})
		if err != nil {
			return nil, err
		}
		runner := projections.NewPebbleRunner(db, m, log)
		rm.runners = append(rm.runners, runner)
		rm.router.AddConsumerHandler("readmodel-"+m.Name(), eventlog.EventsSubjects, sub, runner.Handle)
	}
	rm.wg.Add(1)
	go func() {
		defer rm.wg.Done()
		if err := rm.router.Run(ctx); err != nil {
			log.Error("read model router stopped", "err", err)
		}
	}()
	select {
	case <-rm.router.Running():
		return rm, nil
	case <-time.After(30 * time.Second):
		_ = rm.router.Close()
		rm.wg.Wait()
		return nil, errors.New("read model router did not start")
	}
}

// resetConsumer deletes the model's consumer, if any, and returns the model's checkpoint: the
// consumer is created again to deliver every event after it. The checkpoint in pebble is the
// truth, not the consumer's ack floor: the runner acknowledges events before the batch holding
// them commits, so after a crash the ack floor can be past the checkpoint; and the readmodels
// directory may have been deleted to rebuild the models, or restored from a backup. The
// consumer is this node's own, so nobody else loses its place.
func resetConsumer(ctx context.Context, js jetstream.JetStream, db *pebble.DB, durable, model string) (uint64, error) {
	cp, err := projections.Checkpoint(db, model)
	if err != nil {
		return 0, err
	}
	err = js.DeleteConsumer(ctx, eventlog.StreamEvents, durable)
	if err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return 0, fmt.Errorf("read model %s: reset consumer: %w", model, err)
	}
	return cp, nil
}

// lag is the number of events the slowest read model has not applied (or parked) yet.
func (rm *Runner) lag(ctx context.Context) (uint64, error) {
	var most uint64
	for _, m := range Models() {
		c, err := rm.js.Consumer(ctx, eventlog.StreamEvents, Durable(rm.node, m.Name()))
		if err != nil {
			return 0, fmt.Errorf("read model consumer: %w", err)
		}
		info, err := c.Info(ctx)
		if err != nil {
			return 0, fmt.Errorf("read model consumer: %w", err)
		}
		most = max(most, info.NumPending+uint64(info.NumAckPending))
	}
	return most, nil
}

// Wait waits until every read model has applied every stored event.
func (rm *Runner) Wait(ctx context.Context) error {
	for {
		lag, err := rm.lag(ctx)
		if err == nil && lag == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("read model lag %d: %w", lag, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Close lets the models catch up briefly (they resume from their checkpoints anyway), stops
// the router, waits for it and closes the database. It is idempotent.
func (rm *Runner) Close() error {
	rm.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		for {
			// No answer (a cluster without quorum) is no reason to wait either.
			if lag, err := rm.lag(ctx); err != nil || lag == 0 {
				break
			}
			select {
			case <-ctx.Done():
			case <-time.After(20 * time.Millisecond):
			}
		}
		cancel()
		err := rm.router.Close()
		rm.wg.Wait()
		for _, r := range rm.runners {
			err = errors.Join(err, r.Flush())
		}
		rm.err = errors.Join(err, rm.db.Close())
	})
	return rm.err
}

// DB is the pebble database of read models. Readers must not write to it.
func (rm *Runner) DB() *pebble.DB { return rm.db }
