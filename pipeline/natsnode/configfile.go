package natsnode

import (
	"fmt"
	"net/url"

	"github.com/nats-io/nats-server/v2/server"
)

// The settings jetmedia's own flags cannot express (gateways, leafnode remotes with TLS,
// accounts, TLS on any port...) come from a nats-server configuration file in nats-server's
// own format, so that an operator who knows NATS writes what they already know. The node's
// settings are applied over the file's:
//   - always the node's: server_name (a different one in the file is an error, the node's name
//     is also its JetStream and lease name), jetstream on/off and its store directory, no
//     signal handlers, no subject-match cache, a max payload of at least 8 MiB;
//   - the node's when set (a flag given), else the file's: the client, cluster (route) and leaf
//     listen addresses; the node's routes are added to the file's, its hub to the file's
//     remotes;
//   - the file's when set, else the node's: the JetStream domain, the cluster name, every
//     authorization block (routes, gateways and leaf connections fall back to LinkUser),
//     users and accounts (the node's own users are added to the global account).
// A file without a client port keeps the node's default: no client port, in-process only.

// ReadConfigFile parses a nats-server configuration file; its errors name the file and line.
func ReadConfigFile(path string) (*server.Options, error) {
	opts, err := server.ProcessConfigFile(path)
	if err != nil {
		return nil, fmt.Errorf("pipeline: nats config %s: %w", path, err)
	}
	return opts, nil
}

// ConfigFileRoutes are the route URLs a nats-server configuration file names (its cluster
// block), for counting a cluster's size; none without a file.
func ConfigFileRoutes(path string) ([]string, error) {
	if path == "" {
		return nil, nil
	}
	opts, err := ReadConfigFile(path)
	if err != nil {
		return nil, err
	}
	routes := make([]string, 0, len(opts.Routes))
	for _, u := range opts.Routes {
		routes = append(routes, (&url.URL{Scheme: u.Scheme, Host: u.Host}).String())
	}
	return routes, nil
}

// baseOptions are the file's options (or none) with what the node always decides.
func baseOptions(cfg ServerConfig) (*server.Options, error) {
	opts := &server.Options{}
	if cfg.ConfigFile != "" {
		var err error
		if opts, err = ReadConfigFile(cfg.ConfigFile); err != nil {
			return nil, err
		}
		if opts.ServerName != "" && opts.ServerName != cfg.Name {
			return nil, fmt.Errorf("pipeline: nats config %s: server_name %q differs from the node's name %q (set the name with --name, not in the file)",
				cfg.ConfigFile, opts.ServerName, cfg.Name)
		}
	}
	opts.ServerName = cfg.Name
	opts.JetStream = cfg.JetStream
	opts.StoreDir = cfg.StoreDir
	opts.NoSigs = true
	opts.DisableShortFirstPing = true
	opts.MaxPayload = max(opts.MaxPayload, 8<<20)
	// The account's subject-match cache keeps up to 1024 results, swept at random, and
	// most subjects a node sees once (JetStream acks and replies, each session's inboxes
	// and track subjects): its entries were made all through a node's life and each kept a
	// span of short-lived session objects in use (the churn soak's heap in use x1.43
	// after 1000 lifecycles with it, x1.26 without; live objects x1.02-1.04 either way).
	// A publisher's hot subjects stay cached per connection (nats-server's own L1 cache).
	opts.NoSublistCache = true
	return opts, nil
}

// linkAuth makes routes, gateways and accepted leaf connections require LinkUser with the
// link password, unless the file set their authorization itself. Solicited links present the
// same credentials (added to route URLs without their own; a gateway uses the block's).
func linkAuth(opts *server.Options, cfg ServerConfig) {
	pw := cfg.Auth.LinkPassword
	if pw == "" {
		return
	}
	if opts.Cluster.Port != 0 && opts.Cluster.Username == "" && opts.Cluster.Password == "" {
		opts.Cluster.Username, opts.Cluster.Password = LinkUser, pw
		for _, u := range opts.Routes {
			if u.User == nil { // nats-server presents a route URL's own credentials only
				u.User = url.UserPassword(LinkUser, pw)
			}
		}
	}
	if opts.Gateway.Port != 0 && opts.Gateway.Username == "" && opts.Gateway.Password == "" {
		opts.Gateway.Username, opts.Gateway.Password = LinkUser, pw
	}
}
