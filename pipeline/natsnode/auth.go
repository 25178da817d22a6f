package natsnode

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net/url"

	"github.com/nats-io/nats-server/v2/server"
)

// Only the node writes the log: every client of the embedded server is one of two users.
//   - NodeUser, with a random password made when the server starts and known only to the
//     process (and, for the CLI, to the credentials file in the data directory): the node's
//     in-process connections (Server.Connect). It may do anything.
//   - ReaderUser: anyone else on the client port. It may subscribe to anything, use the
//     JetStream API to read streams and KV buckets and to create, use and acknowledge
//     consumers, and nothing else: no publish onto ev.> (the log), $KV.> (the rooms
//     bucket), nor any stream or bucket creation, update or deletion. Without a reader password,
//     clients that give no credentials are readers (nats.NoAuthUser).
//
// Route and gateway connections are not clients: with a LinkPassword they must present
// LinkUser and it (a server without credentials cannot join), unless the config file sets
// their authorization. A leaf node connects to its hub as LeafUser with the hub's
// LeafPassword (jetmedia sets it to the link password unless given).
const (
	NodeUser   = "jetmedia-node"
	ReaderUser = "reader"
	LeafUser   = "jetmedia-leaf"
	LinkUser   = "jetmedia-link"
)

// AuthConfig sets the credentials of the server's users.
type AuthConfig struct {
	// NodePassword is the node user's password (default: random, made at start).
	NodePassword string
	// ReaderPassword, if set, is what ReaderUser must give; clients without credentials are
	// then refused. Empty: clients without credentials are readers.
	ReaderPassword string
	// LeafPassword is the password leaf nodes give as LeafUser (hub side), and the one this
	// server gives its hub (leaf side) when the hub URL carries no credentials.
	LeafPassword string
	// LinkPassword authenticates routes and gateways (as LinkUser), in both directions.
	// Empty: links are not authenticated unless the config file says so.
	LinkPassword string
}

// readerAllowedPublish are the subjects a reader may publish on: JetStream API requests that
// read, and those that create, read from and acknowledge consumers.
var readerAllowedPublish = []string{
	"$JS.API.INFO",
	"$JS.API.STREAM.INFO.*",
	"$JS.API.STREAM.NAMES",
	"$JS.API.STREAM.LIST",
	"$JS.API.STREAM.MSG.GET.*",
	"$JS.API.DIRECT.GET.>",
	"$JS.API.CONSUMER.CREATE.>",
	"$JS.API.CONSUMER.DURABLE.CREATE.>",
	"$JS.API.CONSUMER.INFO.>",
	"$JS.API.CONSUMER.NAMES.*",
	"$JS.API.CONSUMER.LIST.*",
	"$JS.API.CONSUMER.MSG.NEXT.>",
	// Ordered consumers (KV watches and listings, replays) delete theirs when they stop.
	// A reader could delete another's consumer too: that loses no event (a durable's owner
	// recreates it), but give --nats-reader-password to trusted consumers only.
	"$JS.API.CONSUMER.DELETE.>",
	"$JS.ACK.>",
	"$JS.FC.>",
}

// randomPassword returns 32 random bytes, base64.
func randomPassword() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("pipeline: random password: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// authOptions adds the users to opts; it returns the node user's password.
func authOptions(opts *server.Options, cfg ServerConfig) (string, error) {
	pw := cfg.Auth.NodePassword
	if pw == "" {
		var err error
		if pw, err = randomPassword(); err != nil {
			return "", err
		}
	}
	reader := &server.User{Username: ReaderUser, Password: cfg.Auth.ReaderPassword,
		Permissions: &server.Permissions{
			Publish:   &server.SubjectPermission{Allow: readerAllowedPublish},
			Subscribe: &server.SubjectPermission{Allow: []string{">"}},
		}}
	opts.Users = append(opts.Users, &server.User{Username: NodeUser, Password: pw}, reader)
	if cfg.Auth.ReaderPassword == "" && opts.NoAuthUser == "" {
		opts.NoAuthUser = ReaderUser
	}
	if opts.LeafNode.Port != 0 && opts.LeafNode.Username == "" && opts.LeafNode.Users == nil {
		opts.LeafNode.Username, opts.LeafNode.Password = LeafUser, cfg.Auth.LeafPassword
	}
	return pw, nil
}

// hubURL is the hub's leaf URL with LeafUser's credentials, unless it carries its own.
func hubURL(raw, password string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("pipeline: hub URL %q is not nats-leaf://host:port", raw)
	}
	if u.User == nil {
		u.User = url.UserPassword(LeafUser, password)
	}
	return u, nil
}
