package natsnode

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// ServerConfig configures the embedded NATS server.
type ServerConfig struct {
	// Name is the server (and JetStream node) name; unique in a system of nodes.
	Name string
	// StoreDir is where JetStream keeps its files.
	StoreDir string
	// Listen is host:port for NATS client connections. Empty means none: only in-process
	// connections, the default for a single node.
	Listen string
	// Cluster joins this server to others of one cluster by routes.
	Cluster ClusterConfig
	// Leaf makes this server a leaf-node hub, or a leaf of a hub.
	Leaf LeafConfig
	// Domain is the JetStream domain of a server that runs JetStream and accepts leaf nodes
	// (default DefaultDomain). Leaves without JetStream use the hub's through it.
	Domain string
	// JetStream turns JetStream on (default). A node without it uses the JetStream of the
	// system it joins.
	JetStream bool
	// Logger receives the server's log lines.
	Logger *slog.Logger
	// Storage tunes the guard that detects JetStream write failures (a full disk) and
	// restarts JetStream once space returns.
	Storage StorageGuardConfig
}

// ClusterConfig joins servers of one region into a cluster by routes.
type ClusterConfig struct {
	// Name of the cluster (default "jetmedia").
	Name string
	// Listen is host:port of this server's route port; empty disables routes.
	Listen string
	// Routes are other servers' route URLs, e.g. nats://127.0.0.1:6222.
	Routes []string
}

// LeafConfig joins servers as hub and leaf nodes: a leaf (an edge or media-only node) keeps
// one connection to its hub, which carries media by interest and, for a leaf without
// JetStream, the JetStream API of the hub's domain.
type LeafConfig struct {
	// Listen is host:port on which this server accepts leaf nodes; empty disables it.
	Listen string
	// Hub is the hub's leaf URL (nats-leaf://host:port) this server connects to as a leaf.
	Hub string
}

// DefaultDomain is the JetStream domain of a hub when none is configured.
const DefaultDomain = "jetmedia"

// Validate reports a config that cannot start.
func (c ServerConfig) Validate() error {
	if c.Name == "" {
		return errors.New("pipeline: server name is empty")
	}
	if c.JetStream && c.StoreDir == "" {
		return errors.New("pipeline: JetStream needs a store directory")
	}
	if c.Cluster.Listen != "" && c.Listen == "" {
		// nats-server waits for the client listener before it solicits routes.
		return errors.New("pipeline: routes need a client listen address (use 127.0.0.1:0 for a random one)")
	}
	for _, hp := range []string{c.Listen, c.Cluster.Listen, c.Leaf.Listen} {
		if hp == "" {
			continue
		}
		if _, _, err := splitHostPort(hp); err != nil {
			return err
		}
	}
	return nil
}

func splitHostPort(hp string) (string, int, error) {
	h, p, err := net.SplitHostPort(hp)
	if err != nil {
		return "", 0, fmt.Errorf("pipeline: address %q: %w", hp, err)
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("pipeline: address %q: bad port", hp)
	}
	return h, port, nil
}

// Server is a running embedded nats-server.
type Server struct {
	ns *server.Server
	// opts is what the server started with; it fills in the random ports it chose.
	opts  *server.Options
	log   *slog.Logger
	guard *storageGuard // nil without JetStream

	closeOnce sync.Once
}

// StartServer starts the embedded server and waits until it accepts connections.
func StartServer(ctx context.Context, cfg ServerConfig) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	opts := &server.Options{
		ServerName:            cfg.Name,
		JetStream:             cfg.JetStream,
		StoreDir:              cfg.StoreDir,
		NoSigs:                true,
		DisableShortFirstPing: true,
		MaxPayload:            8 << 20,
	}
	if cfg.Listen == "" {
		opts.DontListen = true
	} else {
		h, p, err := splitHostPort(cfg.Listen)
		if err != nil {
			return nil, err
		}
		opts.Host, opts.Port = h, p
		if p == 0 {
			opts.Port = server.RANDOM_PORT
		}
	}
	if cfg.Cluster.Listen != "" {
		h, p, err := splitHostPort(cfg.Cluster.Listen)
		if err != nil {
			return nil, err
		}
		if p == 0 {
			p = server.RANDOM_PORT
		}
		name := cfg.Cluster.Name
		if name == "" {
			name = "jetmedia"
		}
		opts.Cluster = server.ClusterOpts{Name: name, Host: h, Port: p}
		for _, r := range cfg.Cluster.Routes {
			u, err := url.Parse(r)
			if err != nil || u.Host == "" {
				return nil, fmt.Errorf("pipeline: route URL %q is not nats://host:port", r)
			}
			opts.Routes = append(opts.Routes, u)
		}
	}
	domain := cfg.Domain
	if domain == "" {
		domain = DefaultDomain
	}
	if cfg.Leaf.Listen != "" {
		h, p, err := splitHostPort(cfg.Leaf.Listen)
		if err != nil {
			return nil, err
		}
		if p == 0 {
			p = server.RANDOM_PORT
		}
		opts.LeafNode.Host, opts.LeafNode.Port = h, p
		if cfg.JetStream {
			opts.JetStreamDomain = domain
		}
	}
	if cfg.Leaf.Hub != "" {
		u, err := url.Parse(cfg.Leaf.Hub)
		if err != nil || u.Host == "" {
			return nil, fmt.Errorf("pipeline: hub URL %q is not nats-leaf://host:port", cfg.Leaf.Hub)
		}
		opts.LeafNode.Remotes = []*server.RemoteLeafOpts{{URLs: []*url.URL{u}}}
		if !cfg.JetStream {
			// Plain JetStream clients on the leaf reach the hub's domain.
			opts.JsAccDefaultDomain = map[string]string{server.DEFAULT_GLOBAL_ACCOUNT: domain}
		}
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("pipeline: new nats server: %w", err)
	}
	ns.SetLoggerV2(&natsLogger{log: log.With("component", "nats")}, false, false, false)
	ns.Start()
	deadline := 30 * time.Second
	if d, ok := ctx.Deadline(); ok {
		deadline = time.Until(d)
	}
	if !ns.ReadyForConnections(deadline) {
		ns.Shutdown()
		ns.WaitForShutdown()
		return nil, fmt.Errorf("pipeline: nats server %s not ready after %s", cfg.Name, deadline)
	}
	if cfg.Leaf.Hub != "" {
		if err := waitLeaf(ctx, ns, deadline); err != nil {
			ns.Shutdown()
			ns.WaitForShutdown()
			return nil, err
		}
	}
	if cfg.JetStream && !ns.JetStreamEnabled() {
		ns.Shutdown()
		ns.WaitForShutdown()
		return nil, fmt.Errorf("pipeline: JetStream did not start on %s (see the nats log lines)", cfg.Name)
	}
	srv := &Server{ns: ns, opts: opts, log: log}
	if cfg.JetStream {
		if srv.guard, err = newStorageGuard(ns, cfg.Storage, cfg.StoreDir, log.With("component", "storage")); err != nil {
			ns.Shutdown()
			ns.WaitForShutdown()
			return nil, err
		}
	}
	return srv, nil
}

// Connect opens an in-process client connection, named for the server's monitoring; opts
// come after the defaults (nats.NoEcho for a local media bus's RTP connection).
func (s *Server) Connect(name string, opts ...nats.Option) (*nats.Conn, error) {
	nc, err := nats.Connect("", append([]nats.Option{nats.InProcessServer(s.ns), nats.Name(name),
		nats.MaxReconnects(-1), nats.ReconnectBufSize(64 << 20)}, opts...)...)
	if err != nil {
		return nil, fmt.Errorf("pipeline: connect %s: %w", name, err)
	}
	return nc, nil
}

// Interest reports whether any subscription wants subject: a client of this server, or one
// beyond a route or leaf node connection (their interest is propagated into this server's
// subscription list). With gateways, whose interest is not propagated that way, it is always
// true. It does not allocate.
func (s *Server) Interest(subject string) bool {
	if s.opts.Gateway.Name != "" {
		return true
	}
	return s.ns.GlobalAccount().Interest(subject) > 0
}

// NATS exposes the underlying server for monitoring (Varz, Gatewayz...).
func (s *Server) NATS() *server.Server { return s.ns }

// ClientURL is the URL of the client port, or "" with none.
func (s *Server) ClientURL() string {
	if s.ns.Addr() == nil {
		return ""
	}
	return s.ns.ClientURL()
}

// RouteURL is the URL of this server's route port, or "" with none.
func (s *Server) RouteURL() string {
	a := s.ns.ClusterAddr()
	if a == nil {
		return ""
	}
	return "nats://" + a.String()
}

// LeafURL is the URL leaf nodes connect to, or "" when this server accepts none.
func (s *Server) LeafURL() string {
	if s.opts.LeafNode.Port <= 0 {
		return ""
	}
	return "nats-leaf://" + net.JoinHostPort(s.opts.LeafNode.Host, strconv.Itoa(s.opts.LeafNode.Port))
}

// waitLeaf waits until the connection to the hub is up: before it, JetStream calls from the
// leaf find no responders.
func waitLeaf(ctx context.Context, ns *server.Server, d time.Duration) error {
	deadline := time.Now().Add(d)
	for ns.NumLeafNodes() == 0 {
		if time.Now().After(deadline) {
			return fmt.Errorf("pipeline: no connection to the hub after %s", d)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("pipeline: waiting for the hub: %w", ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
	return nil
}

// Shutdown stops the server and waits for it. It is idempotent.
func (s *Server) Shutdown() {
	s.closeOnce.Do(func() {
		if s.guard != nil {
			s.guard.close()
		}
	})
	s.ns.Shutdown()
	s.ns.WaitForShutdown()
}

type natsLogger struct{ log *slog.Logger }

// Noticef is logged at Debug: nats-server's notices are its startup banner and routine
// connection news, too chatty for an embedded server's operator.
func (l *natsLogger) Noticef(f string, v ...any) { l.log.Debug(fmt.Sprintf(f, v...)) }
func (l *natsLogger) Warnf(f string, v ...any)   { l.log.Warn(fmt.Sprintf(f, v...)) }
func (l *natsLogger) Fatalf(f string, v ...any)  { l.log.Error(fmt.Sprintf(f, v...)) }
func (l *natsLogger) Errorf(f string, v ...any)  { l.log.Error(fmt.Sprintf(f, v...)) }
func (l *natsLogger) Debugf(f string, v ...any)  { l.log.Debug(fmt.Sprintf(f, v...)) }
func (l *natsLogger) Tracef(f string, v ...any)  { l.log.Debug(fmt.Sprintf(f, v...)) }
