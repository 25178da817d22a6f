package natsnode

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"golang.org/x/sys/unix"
)

// ErrStorage wraps why this server's JetStream cannot write now (see Server.WriteErr).
var ErrStorage = errors.New("pipeline: JetStream cannot write")

// StorageGuardConfig tunes the watch on JetStream's storage.
type StorageGuardConfig struct {
	// Interval between checks (default 250 ms): an append that waits for an ack JetStream will
	// never send is cancelled within about this long.
	Interval time.Duration
	// MinFree is the free space on the store's file system that re-enables JetStream after a
	// write failure (default 16 MiB).
	MinFree uint64
}

func (c StorageGuardConfig) withDefaults() StorageGuardConfig {
	if c.Interval <= 0 {
		c.Interval = 250 * time.Millisecond
	}
	if c.MinFree == 0 {
		c.MinFree = 16 << 20
	}
	return c
}

// storageGuard watches JetStream's storage. When a store write fails (a full disk: the file
// store keeps the error and from then on refuses every write without answering the
// publisher) or JetStream disabled itself (out of space), it records why, so that appends fail
// at once instead of waiting for an ack that never comes; once the store's file system has
// MinFree again it restarts JetStream, which reopens the streams from disk, and writes resume
// without a restart of the node.
type storageGuard struct {
	ns    *server.Server
	cfg   StorageGuardConfig
	dir   string
	jscfg server.JetStreamConfig
	log   logger

	mu     sync.Mutex
	err    error
	failed chan struct{} // closed when err turns non-nil; replaced when it clears
	since  time.Time

	stop chan struct{}
	done chan struct{}
}

type logger interface {
	Error(msg string, args ...any)
	Info(msg string, args ...any)
}

func newStorageGuard(ns *server.Server, cfg StorageGuardConfig, dir string, log logger) (*storageGuard, error) {
	jscfg := ns.JetStreamConfig()
	if jscfg == nil {
		return nil, errors.New("pipeline: storage guard: JetStream is not running")
	}
	// The running config names the store's own directory (<StoreDir>/jetstream), but
	// EnableJetStream appends that element again to what it is given.
	if filepath.Base(jscfg.StoreDir) == server.JetStreamStoreDir {
		jscfg.StoreDir = filepath.Dir(jscfg.StoreDir)
	}
	g := &storageGuard{ns: ns, cfg: cfg.withDefaults(), dir: dir, jscfg: *jscfg, log: log,
		failed: make(chan struct{}), stop: make(chan struct{}), done: make(chan struct{})}
	go g.run()
	return g, nil
}

func (g *storageGuard) run() {
	defer close(g.done)
	t := time.NewTicker(g.cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-g.stop:
			return
		case <-t.C:
		}
		g.check()
	}
}

func (g *storageGuard) close() {
	close(g.stop)
	<-g.done
}

// check is one round: detect a failure, or try to recover from one.
func (g *storageGuard) check() {
	g.mu.Lock()
	failing := g.err != nil
	g.mu.Unlock()
	if !failing {
		if why := g.writeProblem(); why != "" {
			g.fail(why)
		}
		return
	}
	free, err := freeBytes(g.dir)
	if err != nil || free < g.cfg.MinFree {
		return
	}
	// Space is back: restart JetStream, which drops the stores' sticky write errors and
	// reopens every stream and consumer from disk.
	if g.ns.JetStreamEnabled() {
		if err := g.ns.ShutdownJetStream(); err != nil {
			g.log.Error("JetStream restart after a write failure: shutdown", "err", err)
			return
		}
	}
	cfg := g.jscfg
	if err := g.ns.EnableJetStream(&cfg); err != nil {
		g.log.Error("JetStream restart after a write failure: enable", "err", err)
		return
	}
	if why := g.writeProblem(); why != "" {
		g.log.Error("JetStream restarted but still cannot write", "reason", why)
		return
	}
	g.mu.Lock()
	down := time.Since(g.since)
	g.err, g.failed = nil, make(chan struct{})
	g.mu.Unlock()
	g.log.Info("JetStream writes again: storage recovered", "down", down.Round(time.Millisecond), "free_bytes", free)
}

// writeProblem says why JetStream cannot write now, or "".
func (g *storageGuard) writeProblem() string {
	if !g.ns.JetStreamEnabled() {
		return "JetStream is disabled (out of storage)"
	}
	h := g.ns.Healthz(&server.HealthzOptions{Details: true})
	for _, e := range h.Errors {
		if strings.Contains(e.Error, "write error") {
			return e.Error
		}
	}
	return ""
}

func (g *storageGuard) fail(why string) {
	free, _ := freeBytes(g.dir)
	g.mu.Lock()
	g.err = fmt.Errorf("%w: %s (%d bytes free in %s)", ErrStorage, why, free, g.dir)
	g.since = time.Now()
	close(g.failed)
	g.mu.Unlock()
	g.log.Error("JetStream cannot write: appends fail until the store has space again", "reason", why,
		"free_bytes", free, "resume_at_free_bytes", g.cfg.MinFree)
}

func (g *storageGuard) state() (error, <-chan struct{}) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.err, g.failed
}

func freeBytes(dir string) (uint64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, fmt.Errorf("pipeline: statfs %s: %w", dir, err)
	}
	return st.Bavail * uint64(st.Bsize), nil
}

// WriteErr is nil while this server's JetStream can write; otherwise it wraps ErrStorage and
// says why (a store write failed, e.g. the disk is full). It is always nil on a server
// without its own JetStream.
func (s *Server) WriteErr() error {
	if s.guard == nil {
		return nil
	}
	err, _ := s.guard.state()
	return err
}

// WriteFailed is closed when WriteErr turns non-nil; after a recovery a new channel is handed
// out. On a server without its own JetStream it is never closed.
func (s *Server) WriteFailed() <-chan struct{} {
	if s.guard == nil {
		return nil
	}
	_, ch := s.guard.state()
	return ch
}
