package natsnode

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

func confFile(t *testing.T, text string) string {
	p := filepath.Join(t.TempDir(), "nats.conf")
	require.NoError(t, os.WriteFile(p, []byte(text), 0o600))
	return p
}

// TestConfigFileMerge: the node's settings over a nats-server config file, as configfile.go
// lists them.
func TestConfigFileMerge(t *testing.T) {
	base := ServerConfig{Name: "n1", JetStream: true, StoreDir: t.TempDir(), Auth: AuthConfig{LinkPassword: "link-pw"}}

	t.Run("file only", func(t *testing.T) {
		cfg := base
		cfg.ConfigFile = confFile(t, `
port: 4333
max_payload: 1024
jetstream { domain: hubzone }
cluster { listen: "127.0.0.1:6333", routes: ["nats://127.0.0.1:6334", "nats://u:p@127.0.0.1:6335"] }
gateway { name: east, listen: "127.0.0.1:7333" }
leafnodes { listen: "127.0.0.1:7433", no_advertise: true }
`)
		opts, err := serverOptions(cfg)
		require.NoError(t, err)
		require.Equal(t, "n1", opts.ServerName)
		require.Equal(t, 4333, opts.Port, "the file's client port")
		require.False(t, opts.DontListen)
		require.EqualValues(t, 8<<20, opts.MaxPayload, "at least 8 MiB")
		require.Equal(t, "hubzone", opts.JetStreamDomain, "the file's domain")
		require.Equal(t, "east", opts.Cluster.Name, "the cluster takes the gateway's name")
		require.Equal(t, LinkUser, opts.Cluster.Username)
		require.Equal(t, LinkUser, opts.Gateway.Username)
		require.Equal(t, "link-pw", opts.Gateway.Password)
		require.True(t, opts.LeafNode.NoAdvertise)
		require.Len(t, opts.Routes, 2)
		pw, _ := opts.Routes[0].User.Password()
		require.Equal(t, "link-pw", pw, "a route URL without credentials gets the link's")
		require.Equal(t, "u", opts.Routes[1].User.Username(), "a route URL's own credentials stay")
	})

	t.Run("flags win", func(t *testing.T) {
		cfg := base
		cfg.Listen = "127.0.0.1:0"
		cfg.Cluster = ClusterConfig{Name: "west", Listen: "127.0.0.1:0", Routes: []string{"nats://127.0.0.1:6999"}}
		cfg.ConfigFile = confFile(t, `
port: 4333
cluster { name: other, listen: "127.0.0.1:6333", routes: ["nats://127.0.0.1:6334"],
  authorization { user: ops, password: secret } }
`)
		opts, err := serverOptions(cfg)
		require.NoError(t, err)
		require.Equal(t, -1, opts.Port, "the flag's (random) client port")
		require.Equal(t, -1, opts.Cluster.Port)
		require.Equal(t, "west", opts.Cluster.Name)
		require.Len(t, opts.Routes, 2, "the flags' routes are added to the file's")
		require.Equal(t, "ops", opts.Cluster.Username, "the file's authorization stays")
	})

	t.Run("no client port", func(t *testing.T) {
		cfg := base
		cfg.ConfigFile = confFile(t, "leafnodes { listen: \"127.0.0.1:7433\" }\n")
		opts, err := serverOptions(cfg)
		require.NoError(t, err)
		require.True(t, opts.DontListen, "in-process only, as without a file")
		_, err = authOptions(opts, cfg)
		require.NoError(t, err)
		require.Equal(t, LeafUser, opts.LeafNode.Username)
		require.Equal(t, DefaultDomain, opts.JetStreamDomain)
	})

	t.Run("edge", func(t *testing.T) {
		cfg := base
		cfg.Domain = "edge-n1"
		cfg.Leaf = LeafConfig{Hub: "nats-leaf://127.0.0.1:7422", Isolate: []string{"ev.>"}}
		opts, err := serverOptions(cfg)
		require.NoError(t, err)
		require.Equal(t, "edge-n1", opts.JetStreamDomain)
		require.Len(t, opts.LeafNode.Remotes, 1)
		require.Equal(t, []string{"ev.>"}, opts.LeafNode.Remotes[0].DenyImports)
		require.Equal(t, []string{"ev.>"}, opts.LeafNode.Remotes[0].DenyExports)
		require.Error(t, ServerConfig{Name: "n1", JetStream: true, StoreDir: "x", Leaf: cfg.Leaf}.Validate(),
			"an edge without its own domain")
	})

	t.Run("bad files", func(t *testing.T) {
		for name, text := range map[string]string{
			"other name": "server_name: someone-else\n",
			"syntax":     "gateway {\n",
			"unknown":    "gatewy { name: x }\n",
		} {
			cfg := base
			cfg.ConfigFile = confFile(t, text)
			_, err := serverOptions(cfg)
			require.Error(t, err, name)
			require.Contains(t, err.Error(), cfg.ConfigFile, name)
		}
		cfg := base
		cfg.ConfigFile = filepath.Join(t.TempDir(), "missing.conf")
		_, err := serverOptions(cfg)
		require.Error(t, err)
	})
}
