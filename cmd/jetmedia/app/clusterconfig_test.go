package app_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/cmd/jetmedia/app"
	"github.com/jetmedia/jetmedia/pipeline/auth"
)

func routed(routes ...string) app.Config {
	cfg := app.Defaults()
	cfg.Name = "n1"
	cfg.NATSListen = "127.0.0.1:0"
	cfg.ClusterListen = "127.0.0.1:6222"
	cfg.Routes = routes
	cfg.AuthKeys = []auth.Key{auth.GenerateKey("k")}
	return cfg
}

// TestJoinedNodeNeedsTheSharedKey: a node that joins others never runs with dev mode's
// per-process random key, whose tokens the other nodes would refuse; the error names the flag.
func TestJoinedNodeNeedsTheSharedKey(t *testing.T) {
	for name, set := range map[string]func(*app.Config){
		"routes": func(c *app.Config) {
			c.NATSListen, c.ClusterListen, c.Routes = "127.0.0.1:0", "127.0.0.1:6222", []string{"nats://127.0.0.1:6223"}
		},
		"hub":         func(c *app.Config) { c.Hub = "nats-leaf://127.0.0.1:7422" },
		"leaf-listen": func(c *app.Config) { c.LeafListen = "127.0.0.1:7422" },
	} {
		t.Run(name, func(t *testing.T) {
			cfg := app.Defaults()
			set(&cfg)
			err := cfg.Validate()
			require.Error(t, err)
			require.Contains(t, err.Error(), "--auth-key")
			cfg.AuthKeys = []auth.Key{auth.GenerateKey("k")}
			require.NoError(t, cfg.Validate())
		})
	}
	require.NoError(t, app.Defaults().Validate(), "a node alone may run in dev mode")
}

func TestReplicas(t *testing.T) {
	three := []string{"nats://127.0.0.1:6222", "nats://127.0.0.1:6223", "nats://127.0.0.1:6224"}
	for _, tc := range []struct {
		name     string
		cfg      app.Config
		replicas int
		size     int
		valid    bool
	}{
		{"alone", app.Defaults(), 1, 1, true},
		{"pair, self in routes", routed(three[:2]...), 1, 2, true},
		{"three, self in routes", routed(three...), 3, 3, true},
		{"three, self not in routes", routed(three[1:]...), 3, 3, true},
		{"every interface: self by port", func() app.Config {
			c := routed("nats://10.0.0.1:6222", "nats://10.0.0.2:6222", "nats://10.0.0.3:6222")
			c.ClusterListen = "0.0.0.0:6222"
			return c
		}(), 3, 3, true},
		{"set to 2 in three", func() app.Config { c := routed(three...); c.Replicas = 2; return c }(), 2, 3, true},
		{"more than the cluster", func() app.Config { c := routed(three[:2]...); c.Replicas = 3; return c }(), 3, 2, false},
		{"negative", func() app.Config { c := app.Defaults(); c.Replicas = -1; return c }(), 1, 1, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.size, tc.cfg.ClusterSize())
			require.Equal(t, tc.replicas, tc.cfg.EffectiveReplicas())
			if tc.valid {
				require.NoError(t, tc.cfg.Validate())
			} else {
				require.ErrorContains(t, tc.cfg.Validate(), "replicas")
			}
		})
	}
}
