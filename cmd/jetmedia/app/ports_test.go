package app_test

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/cmd/jetmedia/app"
	"github.com/jetmedia/jetmedia/pipeline/auth"
)

// TestTakenPortNamesItsFlag occupies each port a node listens on and requires start-up to end
// within 5 s with an error that names the serve flag to change.
func TestTakenPortNamesItsFlag(t *testing.T) {
	tcp := func(t *testing.T) string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		t.Cleanup(func() { _ = ln.Close() })
		return ln.Addr().String()
	}
	for _, tc := range []struct {
		flag   string
		occupy func(t *testing.T, cfg *app.Config)
	}{
		{"--nats-listen", func(t *testing.T, cfg *app.Config) { cfg.NATSListen = tcp(t) }},
		{"--cluster-listen", func(t *testing.T, cfg *app.Config) {
			cfg.NATSListen = "127.0.0.1:0"
			cfg.ClusterListen = tcp(t)
		}},
		{"--leaf-listen", func(t *testing.T, cfg *app.Config) { cfg.LeafListen = tcp(t) }},
		{"--http", func(t *testing.T, cfg *app.Config) { cfg.HTTPAddr = tcp(t) }},
		{"--sip-listen", func(t *testing.T, cfg *app.Config) {
			uc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
			require.NoError(t, err)
			t.Cleanup(func() { _ = uc.Close() })
			cfg.SIP.Listen = uc.LocalAddr().String()
		}},
		{"--udp-port", func(t *testing.T, cfg *app.Config) {
			uc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
			require.NoError(t, err)
			t.Cleanup(func() { _ = uc.Close() })
			cfg.UDPHost = "127.0.0.1"
			cfg.UDPPort = uc.LocalAddr().(*net.UDPAddr).Port
		}},
	} {
		t.Run(tc.flag, func(t *testing.T) {
			cfg := app.Defaults()
			cfg.Name = "taken"
			cfg.DataDir = t.TempDir()
			cfg.HTTPAddr = "127.0.0.1:0"
			cfg.UDPPort = 0
			cfg.AuthKeys = []auth.Key{auth.GenerateKey("ports")} // a cluster or hub node needs one
			tc.occupy(t, &cfg)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			start := time.Now()
			n, err := app.Start(ctx, cfg)
			if err == nil {
				_ = n.Close()
			}
			require.Error(t, err, "a node started on a taken port")
			require.Less(t, time.Since(start), 5*time.Second, "start-up ended in time")
			require.Contains(t, err.Error(), "(change "+tc.flag, "the error names the flag: %v", err)
			t.Log(err)
		})
	}
}
