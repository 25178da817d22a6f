package cluster

import (
	"encoding/json"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/cmd/jetmedia/app"
	"github.com/jetmedia/jetmedia/projections/projector"
)

// projectorLease reads the rooms projection's lease through n.
func projectorLease(t *testing.T, n *app.Node) (projector.Record, uint64) {
	t.Helper()
	ctx := ctxT(t, 5*time.Second)
	kv, err := n.JetStream().KeyValue(ctx, projector.Bucket)
	require.NoError(t, err)
	e, err := kv.Get(ctx, projector.KeyRooms)
	if err != nil {
		return projector.Record{}, 0
	}
	var r projector.Record
	require.NoError(t, json.Unmarshal(e.Value(), &r))
	return r, e.Revision()
}

// moveProjector hands the rooms projection's lease to node: its record written over the
// holder's revision makes the holder stand by at its next renewal, and node take it at its
// next read (a node takes its own name's lease at once, as after a restart).
func moveProjector(t *testing.T, via *app.Node, node string) {
	t.Helper()
	kv, err := via.JetStream().KeyValue(ctxT(t, 5*time.Second), projector.Bucket)
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		r, rev := projectorLease(t, via)
		if r.Node == node && r.Process != "" {
			return true
		}
		if rev == 0 || r.Node == node {
			return false // being taken
		}
		b, err := json.Marshal(projector.Record{Node: node, TTL: time.Minute})
		require.NoError(t, err)
		_, err = kv.Update(ctxT(t, 5*time.Second), projector.KeyRooms, b, rev)
		if err != nil && !jetstreamConflict(err) {
			require.NoError(t, err)
		}
		return false
	}, 30*time.Second, 200*time.Millisecond, "%s writes the rooms projection", node)
}

func jetstreamConflict(err error) bool {
	return err != nil && (errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyExists))
}

// TestKillProjector: three routed nodes, everything R3; node b (a child process) writes the
// rooms projection (it holds the projection's lease) and holds a publisher. kill -9 of b during
// the room: a or c takes the lease over once it expires and folds on from the projection's
// checkpoint, so the bucket ends equal to a fold of the whole log (nothing folded twice or
// skipped), and b's publisher ends once within 15 s.
func TestKillProjector(t *testing.T) {
	cfgs := routedConfigs(t, "a", "b", "c")
	b := startChild(t, cfgs[1])
	nodes := startNodes(t, cfgs[0], cfgs[2])
	a, c := nodes[0], nodes[1]
	b.waitUp(t)
	moveProjector(t, a, "b")
	killed := runKill(t, killCase{victim: b, live: a, viewers: c.HTTPURL(), writer: c, obs: a})
	var took projector.Record
	require.Eventually(t, func() bool {
		took, _ = projectorLease(t, a)
		return took.Node == "a" || took.Node == "c"
	}, 30*time.Second, 100*time.Millisecond, "a survivor writes the rooms projection")
	t.Logf("kill -9 of the projection's writer b: %s took its lease %.2f s after the kill (lease TTL %v)",
		took.Node, took.Since.Sub(killed).Seconds(), killLease.TTL)

	// Both survivors are ready: the one standing by reads the lag of the writer's durable.
	for _, n := range []*app.Node{a, c} {
		require.Eventually(t, func() bool {
			resp, err := http.Get(n.HTTPURL() + "/readyz")
			if err != nil {
				return false
			}
			_ = resp.Body.Close()
			return resp.StatusCode == http.StatusOK
		}, 30*time.Second, 100*time.Millisecond, "%s ready (writer %s)", n.Name(), took.Node)
	}
}
