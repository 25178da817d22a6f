package natsnode

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"slices"
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
	// Domain is the JetStream domain of an edge: a leaf (Leaf.Hub, or remotes in ConfigFile)
	// that runs JetStream of its own. Required for one; the region's servers (and media-only
	// leaves) use Leaf.HubDomain.
	Domain string
	// ConfigFile is a nats-server configuration file (nats-server's own format: gateways,
	// leafnodes, accounts, TLS) the settings above are merged over; see configfile.go.
	ConfigFile string
	// JetStream turns JetStream on (default). A node without it uses the JetStream of the
	// system it joins.
	JetStream bool
	// Auth sets the passwords of the server's users (see NodeUser).
	Auth AuthConfig
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
	// HubDomain is the JetStream domain of the region (its servers and hubs): default
	// DefaultDomain, or the ConfigFile's jetstream domain on a region's server.
	HubDomain string
	// Isolate are the subjects an edge's link carries in neither direction: those of the
	// edge's own streams and buckets, which the region has under the same names.
	Isolate []string
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
	if c.JetStream && c.Leaf.Hub != "" && c.Domain == "" {
		return errors.New("pipeline: a leaf with JetStream of its own (an edge) needs its own JetStream domain")
	}
	if c.Domain != "" && c.Domain == c.Leaf.HubDomain {
		return fmt.Errorf("pipeline: the edge's JetStream domain %q is the hub's", c.Domain)
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
	// password is NodeUser's, for the in-process connections.
	password string

	closeOnce sync.Once
}

// Listener names one of the server's listening ports, in a ListenError.
type Listener string

// The server's listeners.
const (
	ClientListener  Listener = "client"  // ServerConfig.Listen
	ClusterListener Listener = "cluster" // ClusterConfig.Listen
	LeafListener    Listener = "leaf"    // LeafConfig.Listen
)

// ListenError says that a port the server was to listen on cannot be had (taken, or not an
// address of this host), so that the caller can name the setting to change.
type ListenError struct {
	Listener Listener
	Addr     string
	Err      error
}

func (e *ListenError) Error() string {
	return fmt.Sprintf("pipeline: nats %s port %s: %v", e.Listener, e.Addr, e.Err)
}

func (e *ListenError) Unwrap() error { return e.Err }

// StartServer starts the embedded server and waits until it accepts connections. A port that
// cannot be had is a *ListenError at once, not a wait for a server that never gets ready.
func StartServer(ctx context.Context, cfg ServerConfig) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := checkPorts(cfg); err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	opts, err := serverOptions(cfg)
	if err != nil {
		return nil, err
	}
	password, err := authOptions(opts, cfg)
	if err != nil {
		return nil, err
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("pipeline: new nats server: %w", err)
	}
	nl := &natsLogger{log: log.With("component", "nats"), fatal: make(chan string, 1)}
	ns.SetLoggerV2(nl, false, false, false)
	ns.Start()
	if err := waitStarted(ctx, ns, cfg, nl.fatal); err != nil {
		ns.Shutdown()
		ns.WaitForShutdown()
		return nil, err
	}
	srv := &Server{ns: ns, opts: opts, log: log, password: password}
	if cfg.JetStream {
		if srv.guard, err = newStorageGuard(ns, cfg.Storage, cfg.StoreDir, log.With("component", "storage")); err != nil {
			ns.Shutdown()
			ns.WaitForShutdown()
			return nil, err
		}
	}
	return srv, nil
}

// checkPorts listens on each fixed port the server is to open, and lets it go again: nats-
// server reports a taken port only in its log and then never gets ready.
func checkPorts(cfg ServerConfig) error {
	for _, l := range []struct {
		which Listener
		addr  string
	}{{ClientListener, cfg.Listen}, {ClusterListener, cfg.Cluster.Listen}, {LeafListener, cfg.Leaf.Listen}} {
		if _, port, err := splitHostPort(l.addr); err != nil || port == 0 {
			continue // none, or a random port
		}
		ln, err := net.Listen("tcp", l.addr)
		if err != nil {
			return &ListenError{Listener: l.which, Addr: l.addr, Err: err}
		}
		_ = ln.Close()
	}
	return nil
}

// waitStarted waits until the server accepts connections (and, as configured, reaches its hub
// and runs JetStream), or fails at once when the server logs a fatal error.
func waitStarted(ctx context.Context, ns *server.Server, cfg ServerConfig, fatal <-chan string) error {
	deadline := 30 * time.Second
	if d, ok := ctx.Deadline(); ok {
		deadline = time.Until(d)
	}
	end := time.Now().Add(deadline)
	for !ns.ReadyForConnections(50 * time.Millisecond) {
		select {
		case msg := <-fatal:
			return fmt.Errorf("pipeline: nats server %s: %s", cfg.Name, msg)
		case <-ctx.Done():
			return fmt.Errorf("pipeline: nats server %s not ready: %w", cfg.Name, ctx.Err())
		default:
		}
		if time.Now().After(end) {
			return fmt.Errorf("pipeline: nats server %s not ready after %s", cfg.Name, deadline)
		}
	}
	if cfg.Leaf.Hub != "" && !cfg.JetStream {
		// An edge (JetStream of its own) starts without its hub too.
		if err := waitLeaf(ctx, ns, time.Until(end)); err != nil {
			return err
		}
	}
	if cfg.JetStream && !ns.JetStreamEnabled() {
		return fmt.Errorf("pipeline: JetStream did not start on %s (see the nats log lines)", cfg.Name)
	}
	return nil
}

// serverOptions turns the config (over its ConfigFile's, see configfile.go) into
// nats-server's options.
func serverOptions(cfg ServerConfig) (*server.Options, error) {
	opts, err := baseOptions(cfg)
	if err != nil {
		return nil, err
	}
	switch {
	case cfg.Listen != "":
		h, p, err := splitHostPort(cfg.Listen)
		if err != nil {
			return nil, err
		}
		opts.Host, opts.Port = h, randomIfZero(p)
	case opts.Port == 0:
		opts.DontListen = true
	}
	if err := clusterOptions(opts, cfg.Cluster); err != nil {
		return nil, err
	}
	if err := leafOptions(opts, cfg); err != nil {
		return nil, err
	}
	linkAuth(opts, cfg)
	if opts.SystemAccount == "" && opts.Gateway.Name != "" && (opts.LeafNode.Port != 0 || len(opts.LeafNode.Remotes) > 0) {
		// nats-server wants the system account named when a server has gateways and leaf
		// nodes; it is the one it makes by default.
		opts.SystemAccount = server.DEFAULT_SYSTEM_ACCOUNT
		if !slices.ContainsFunc(opts.Accounts, func(a *server.Account) bool { return a.Name == opts.SystemAccount }) {
			opts.Accounts = append(opts.Accounts, server.NewAccount(opts.SystemAccount))
		}
	}
	return opts, nil
}

func randomIfZero(port int) int {
	if port == 0 {
		return server.RANDOM_PORT
	}
	return port
}

func clusterOptions(opts *server.Options, c ClusterConfig) error {
	if c.Listen != "" {
		h, p, err := splitHostPort(c.Listen)
		if err != nil {
			return err
		}
		opts.Cluster.Host, opts.Cluster.Port = h, randomIfZero(p)
	}
	if c.Name != "" {
		opts.Cluster.Name = c.Name
	}
	if opts.Cluster.Port != 0 && opts.Cluster.Name == "" {
		// A region joined by a gateway is named as its gateway (nats-server wants both alike).
		opts.Cluster.Name = opts.Gateway.Name
		if opts.Cluster.Name == "" {
			opts.Cluster.Name = "jetmedia"
		}
	}
	for _, r := range c.Routes {
		u, err := url.Parse(r)
		if err != nil || u.Host == "" {
			return fmt.Errorf("pipeline: route URL %q is not nats://host:port", r)
		}
		opts.Routes = append(opts.Routes, u)
	}
	return nil
}

// leafOptions sets the leaf port, the hub remote and the JetStream domain. A node with
// JetStream and no hub is part of the hub's (region's) domain; a leaf with JetStream is an
// edge with its own domain, whose log subjects do not cross its link (Leaf.Isolate); a leaf
// without JetStream uses the hub's domain.
func leafOptions(opts *server.Options, cfg ServerConfig) error {
	hubDomain := cfg.Leaf.HubDomain
	if hubDomain == "" {
		hubDomain = DefaultDomain
	}
	if cfg.Leaf.Listen != "" {
		h, p, err := splitHostPort(cfg.Leaf.Listen)
		if err != nil {
			return err
		}
		opts.LeafNode.Host, opts.LeafNode.Port = h, randomIfZero(p)
	}
	edge := cfg.JetStream && (cfg.Leaf.Hub != "" || len(opts.LeafNode.Remotes) > 0)
	if cfg.JetStream && opts.JetStreamDomain == "" {
		opts.JetStreamDomain = hubDomain
		if edge {
			opts.JetStreamDomain = cfg.Domain
		}
	}
	if cfg.Leaf.Hub != "" {
		u, err := hubURL(cfg.Leaf.Hub, cfg.Auth.LeafPassword)
		if err != nil {
			return err
		}
		opts.LeafNode.Remotes = append(opts.LeafNode.Remotes, &server.RemoteLeafOpts{URLs: []*url.URL{u}})
	}
	for _, r := range opts.LeafNode.Remotes {
		if edge {
			r.DenyImports = append(r.DenyImports, cfg.Leaf.Isolate...)
			r.DenyExports = append(r.DenyExports, cfg.Leaf.Isolate...)
		}
	}
	if !cfg.JetStream && len(opts.LeafNode.Remotes) > 0 && opts.JsAccDefaultDomain == nil {
		// Plain JetStream clients on the leaf reach the hub's domain.
		opts.JsAccDefaultDomain = map[string]string{server.DEFAULT_GLOBAL_ACCOUNT: hubDomain}
	}
	return nil
}

// Connect opens an in-process client connection, named for the server's monitoring; opts
// come after the defaults (nats.NoEcho for a local media bus's RTP connection).
func (s *Server) Connect(name string, opts ...nats.Option) (*nats.Conn, error) {
	nc, err := nats.Connect("", append([]nats.Option{nats.InProcessServer(s.ns), nats.Name(name),
		nats.UserInfo(NodeUser, s.password), nats.MaxReconnects(-1), nats.ReconnectBufSize(64 << 20)}, opts...)...)
	if err != nil {
		return nil, fmt.Errorf("pipeline: connect %s: %w", name, err)
	}
	return nc, nil
}

// NodeCredentials are the user and password of the node's own connections, for a tool of the
// same operator (the CLI on the node's data directory) to connect with over the client port.
func (s *Server) NodeCredentials() (user, password string) { return NodeUser, s.password }

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

// Domain is the server's JetStream domain ("" without JetStream).
func (s *Server) Domain() string {
	if !s.opts.JetStream {
		return ""
	}
	return s.opts.JetStreamDomain
}

// Edge reports whether the server is an edge: a leaf with JetStream of its own, in its own
// domain, whose log the region sources.
func (s *Server) Edge() bool { return s.opts.JetStream && len(s.opts.LeafNode.Remotes) > 0 }

// HubLinked reports whether a leaf connection this server dialled is up: on an edge, whether
// its link to the region is. It reads the server's state and sends nothing.
func (s *Server) HubLinked() bool {
	if s.opts.LeafNode.Port == 0 { // it accepts none: every leaf connection is its own
		return s.ns.NumLeafNodes() > 0
	}
	lz, err := s.ns.Leafz(nil)
	if err != nil {
		return false
	}
	return slices.ContainsFunc(lz.Leafs, func(l *server.LeafInfo) bool { return l.IsSpoke })
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

type natsLogger struct {
	log *slog.Logger
	// fatal receives the first fatal error (a listener that failed): nats-server logs it and
	// goes on without the listener, never ready.
	fatal chan string
}

// Noticef is logged at Debug: nats-server's notices are its startup banner and routine
// connection news, too chatty for an embedded server's operator.
func (l *natsLogger) Noticef(f string, v ...any) { l.log.Debug(fmt.Sprintf(f, v...)) }
func (l *natsLogger) Warnf(f string, v ...any)   { l.at(slog.LevelWarn, f, v) }
func (l *natsLogger) Fatalf(f string, v ...any) {
	msg := fmt.Sprintf(f, v...)
	l.log.Error(msg)
	select {
	case l.fatal <- msg:
	default:
	}
}
func (l *natsLogger) Errorf(f string, v ...any) { l.at(slog.LevelError, f, v) }
func (l *natsLogger) Debugf(f string, v ...any) { l.log.Debug(fmt.Sprintf(f, v...)) }
func (l *natsLogger) Tracef(f string, v ...any) { l.log.Debug(fmt.Sprintf(f, v...)) }
