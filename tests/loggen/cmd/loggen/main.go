// Command loggen fills a data directory's event log with synthetic room histories, for the
// measurements in docs/benchmarks.md:
//
//	go run ./tests/loggen/cmd/loggen --data /tmp/big --rooms 1 --events 1000000
//
// writes 1,000,000 hash-chained events of room "big" (rooms big, big1, big2, ... with --rooms
// above 1, the events split between them). The directory then serves `jetmedia serve --data`
// and the tools. No server may run on it meanwhile.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetmedia/jetmedia/pipeline/eventlog"
	"github.com/jetmedia/jetmedia/pipeline/natsnode"
	"github.com/jetmedia/jetmedia/tests/loggen"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "loggen:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("loggen", flag.ContinueOnError)
	data := fs.String("data", "", "data directory to write into (created if missing)")
	rooms := fs.Int("rooms", 1, "number of rooms")
	n := fs.Int("events", 100000, "number of events in all")
	seed := fs.Uint64("seed", 1, "random seed")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *data == "" || *rooms < 1 || *n < 1 {
		return errors.New("give --data, and --rooms and --events of at least 1")
	}
	srv, err := natsnode.StartServer(ctx, natsnode.ServerConfig{Name: "loggen", JetStream: true, StoreDir: *data})
	if err != nil {
		return err
	}
	defer srv.Shutdown()
	nc, err := srv.Connect("loggen")
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	if err := eventlog.Declare(ctx, js, eventlog.StorageConfig{}); err != nil {
		return err
	}
	start := time.Now()
	base := time.Date(2026, 11, 3, 10, 0, 0, 0, time.UTC)
	for r := range *rooms {
		room := "big"
		if r > 0 {
			room += strconv.Itoa(r)
		}
		count := *n / *rooms
		if r == 0 {
			count += *n % *rooms
		}
		if err := loggen.Write(ctx, js, count, loggen.New(room, *seed+uint64(r), base, time.Second).Next); err != nil {
			return fmt.Errorf("room %s: %w", room, err)
		}
	}
	fmt.Printf("wrote %d events in %d room(s) to %s in %s\n", *n, *rooms, *data, time.Since(start).Round(time.Millisecond))
	return nil
}
