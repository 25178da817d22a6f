// Package leasefault makes a node's lease renewals fail for real, for tests of what a node
// does when the others may have taken it for lost: the nodes bucket's stream is set to refuse
// every message larger than a few bytes (every lease is), until it is restored.
//
// Imports: projections/presence (the bucket's name)
package leasefault

import (
	"context"
	"sync"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/projections/presence"
)

// Refuse has the nodes bucket reached through js refuse every lease write until restore is
// called (also at the end of the test); restore is idempotent.
func Refuse(ctx context.Context, t testing.TB, js jetstream.JetStream) (restore func()) {
	t.Helper()
	s, err := js.Stream(ctx, "KV_"+presence.BucketNodes)
	require.NoError(t, err)
	cfg := s.CachedInfo().Config
	was := cfg.MaxMsgSize
	cfg.MaxMsgSize = 8
	_, err = js.UpdateStream(ctx, cfg)
	require.NoError(t, err)
	var once sync.Once
	restore = func() {
		once.Do(func() {
			cfg.MaxMsgSize = was
			_, err := js.UpdateStream(context.WithoutCancel(ctx), cfg)
			require.NoError(t, err)
		})
	}
	t.Cleanup(restore)
	return restore
}
