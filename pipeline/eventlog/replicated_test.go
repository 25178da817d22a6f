package eventlog_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/pipeline/eventlog"
	"github.com/jetmedia/jetmedia/pipeline/natsnode"
	"github.com/jetmedia/jetmedia/tests/testports"
)

// startCluster runs n embedded servers joined by routes into one JetStream cluster, started
// together (the meta group elects its leader only once a quorum is up), and declares the
// stream with n replicas. It returns one JetStream client per server.
func startCluster(t *testing.T, n int) []jetstream.JetStream {
	t.Helper()
	ports := testports.Reserve(t, n)
	routes := make([]string, n)
	for i, p := range ports {
		routes[i] = "nats://127.0.0.1:" + strconv.Itoa(p)
	}
	srvs := make([]*natsnode.Server, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			srvs[i], errs[i] = natsnode.StartServer(ctx, natsnode.ServerConfig{
				Name: fmt.Sprintf("r%d", i), JetStream: true, StoreDir: t.TempDir(),
				Listen:  "127.0.0.1:0",
				Cluster: natsnode.ClusterConfig{Name: "replicated", Listen: "127.0.0.1:" + strconv.Itoa(ports[i]), Routes: routes},
			})
		})
	}
	wg.Wait()
	for i := range srvs {
		if srvs[i] != nil {
			t.Cleanup(srvs[i].Shutdown)
		}
		require.NoError(t, errs[i])
	}
	out := make([]jetstream.JetStream, n)
	for i, s := range srvs {
		nc, err := s.Connect(fmt.Sprintf("client-%d", i))
		require.NoError(t, err)
		t.Cleanup(nc.Close)
		out[i], err = jetstream.New(nc)
		require.NoError(t, err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	require.NoError(t, eventlog.Declare(ctx, out[0], eventlog.StorageConfig{Replicas: n}))
	return out
}

// On a replicated stream JetStream answers a stale expected sequence with 10164, not 10071: the
// appender must still see a conflict, retry Append and report ErrConflict from AppendExpect.
func TestAppendConflictReplicated(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a three-server cluster")
	}
	js := startCluster(t, 3)
	ctx := t.Context()
	a := eventlog.NewAppender(js[0], "n1")
	head, err := a.Append(ctx, joined(t, "r", "p1"))
	require.NoError(t, err)

	// The server's own answer, to be sure this test exercises the replicated code: writers that
	// race on one room with the right expected sequence get 10164 while another's write of the
	// room is in flight (a sequentially stale one gets 10071).
	requireReplicatedConflictCode(t, js)

	// Another node moves the room on; a's head is stale.
	other := eventlog.NewAppender(js[1], "n2")
	_, err = other.Append(ctx, joined(t, "r", "p2"))
	require.NoError(t, err)
	before := ids(readRoom(t, js[0], "r"))
	_, err = a.AppendExpect(ctx, head, joined(t, "r", "p3"))
	require.ErrorIs(t, err, eventlog.ErrConflict)
	require.Equal(t, before, ids(readRoom(t, js[0], "r")), "nothing written on conflict")

	// Append resolves the conflict by itself, from every server, concurrently.
	const perNode = 15
	var wg sync.WaitGroup
	errs := make(chan error, len(js))
	for i, c := range js {
		ap := eventlog.NewAppender(c, fmt.Sprintf("w%d", i))
		wg.Go(func() {
			for j := range perNode {
				if _, err := ap.Append(ctx, joined(t, "r", fmt.Sprintf("w%d-%d", i, j))); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	// a, whose head is stale again, appends too.
	e := joined(t, "r", "late")
	_, err = a.Append(ctx, e)
	require.NoError(t, err)
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	got := readRoom(t, js[2], "r")
	require.Len(t, got, len(before)+len(js)*perNode+1)
	requireIntact(t, js[0], "r", len(got))
}

func requireReplicatedConflictCode(t *testing.T, js []jetstream.JetStream) {
	t.Helper()
	ctx := t.Context()
	codes := map[jetstream.ErrorCode]int{}
	for round := 0; round < 20 && codes[jetstream.JSErrCodeStreamWrongLastSequenceConstant] == 0; round++ {
		var mu sync.Mutex
		var wg sync.WaitGroup
		for i := range 12 {
			wg.Go(func() {
				room := fmt.Sprintf("raw%d", round)
				_, err := js[i%len(js)].Publish(ctx, eventlog.EventSubject(room, "peer_joined"), []byte("{}"),
					jetstream.WithExpectLastSequenceForSubject(0, eventlog.RoomEventsFilter(room)))
				var apiErr *jetstream.APIError
				if errors.As(err, &apiErr) {
					mu.Lock()
					codes[apiErr.ErrorCode]++
					mu.Unlock()
				}
			})
		}
		wg.Wait()
	}
	t.Logf("conflict codes of racing writers: %v", codes)
	require.NotZero(t, codes[jetstream.JSErrCodeStreamWrongLastSequenceConstant], "no 10164 from the replicated stream")
}
