package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strconv"
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
	// Gateway, when Listen is set, joins this server to others as its own cluster in a
	// supercluster (see GatewayConfig).
	Gateway GatewayConfig
	// JetStream turns JetStream on (default). A node without it uses the JetStream of the
	// system it joins.
	JetStream bool
	// Logger receives the server's log lines.
	Logger *slog.Logger
}

// GatewayConfig joins clusters into a supercluster. Each jetmedia node forms a cluster of its
// own name; Remotes name the others and where their gateway port listens.
type GatewayConfig struct {
	// Listen is host:port of this node's gateway port; empty disables gateways.
	Listen string
	// Remotes maps a remote cluster (node) name to its gateway URL, e.g. nats://127.0.0.1:7222.
	Remotes map[string]string
}

// Validate reports a config that cannot start.
func (c ServerConfig) Validate() error {
	if c.Name == "" {
		return errors.New("pipeline: server name is empty")
	}
	if c.JetStream && c.StoreDir == "" {
		return errors.New("pipeline: JetStream needs a store directory")
	}
	for _, hp := range []string{c.Listen, c.Gateway.Listen} {
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
	ns  *server.Server
	log *slog.Logger
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
	if cfg.Gateway.Listen != "" {
		h, p, err := splitHostPort(cfg.Gateway.Listen)
		if err != nil {
			return nil, err
		}
		if p == 0 {
			p = server.RANDOM_PORT
		}
		opts.Cluster.Name = cfg.Name
		opts.Gateway = server.GatewayOpts{Name: cfg.Name, Host: h, Port: p}
		for name, u := range cfg.Gateway.Remotes {
			rg, err := remoteGateway(name, u)
			if err != nil {
				return nil, err
			}
			opts.Gateway.Gateways = append(opts.Gateway.Gateways, rg)
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
	return &Server{ns: ns, log: log}, nil
}

// Connect opens an in-process client connection, named for the server's monitoring.
func (s *Server) Connect(name string) (*nats.Conn, error) {
	nc, err := nats.Connect("", nats.InProcessServer(s.ns), nats.Name(name),
		nats.MaxReconnects(-1), nats.ReconnectBufSize(64<<20))
	if err != nil {
		return nil, fmt.Errorf("pipeline: connect %s: %w", name, err)
	}
	return nc, nil
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

// GatewayURL is the URL of this server's gateway port, or "" with none.
func (s *Server) GatewayURL() string {
	a := s.ns.GatewayAddr()
	if a == nil {
		return ""
	}
	return "nats://" + a.String()
}

// Shutdown stops the server and waits for it. It is idempotent.
func (s *Server) Shutdown() {
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

func remoteGateway(name, rawURL string) (*server.RemoteGatewayOpts, error) {
	u, err := url.Parse(rawURL)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("pipeline: gateway %s URL %q is not nats://host:port", name, rawURL)
	}
	return &server.RemoteGatewayOpts{Name: name, URLs: []*url.URL{u}}, nil
}
