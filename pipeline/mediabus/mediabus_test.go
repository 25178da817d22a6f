package mediabus_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/pipeline/mediabus"
	"github.com/jetmedia/jetmedia/pipeline/natsnode"
)

// mediaRecorder collects what a media subscription delivers.
type mediaRecorder struct {
	mu   sync.Mutex
	got  []string
	more chan struct{}
}

func newMediaRecorder() *mediaRecorder { return &mediaRecorder{more: make(chan struct{}, 1024)} }

func (r *mediaRecorder) fn(data []byte) {
	r.mu.Lock()
	r.got = append(r.got, string(data))
	r.mu.Unlock()
	r.more <- struct{}{}
}

func (r *mediaRecorder) packets() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.got...)
}

// waitFor waits until n packets arrived.
func (r *mediaRecorder) waitFor(t *testing.T, n int) []string {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for len(r.packets()) < n {
		select {
		case <-r.more:
		case <-deadline:
			t.Fatalf("got %d of %d packets: %q", len(r.packets()), n, r.packets())
		}
	}
	return r.packets()
}

func TestLocalMediaBus(t *testing.T) {
	srv, conn := mediabus.StartTestServer(t, "mediabus")

	_, err := mediabus.NewLocalMediaBus(conn("a-fb"), conn("a-echo"), nil)
	require.ErrorIs(t, err, mediabus.ErrEcho)

	// Node a delivers its own RTP locally; "remote" stands for another node's bus.
	a, err := mediabus.NewLocalMediaBus(conn("a-fb"), conn("a-rtp", nats.NoEcho()), srv.Interest)
	require.NoError(t, err)
	remote := mediabus.NewMediaBus(conn("remote"))
	atA, atRemote := newMediaRecorder(), newMediaRecorder()
	subA, err := a.Subscribe("r", "t", "0", atA.fn)
	require.NoError(t, err)
	_, err = remote.Subscribe("r", "t", "0", atRemote.fn)
	require.NoError(t, err)
	require.NoError(t, a.Flush())
	require.NoError(t, remote.Flush())

	// A's own packet: at A before Send returns (no NATS round trip), once; at the remote
	// node through NATS.
	require.NoError(t, a.Sender("r", "t", "0").Send([]byte("from a")))
	require.Equal(t, []string{"from a"}, atA.packets())
	require.Equal(t, []string{"from a"}, atRemote.waitFor(t, 1))
	// The remote node's packet reaches A through NATS.
	require.NoError(t, remote.Sender("r", "t", "0").Send([]byte("from remote")))
	require.Equal(t, []string{"from a", "from remote"}, atA.waitFor(t, 2))
	require.NoError(t, a.Flush())
	require.Equal(t, []string{"from a", "from remote"}, atA.packets(), "no echo of A's own packet")
	require.Equal(t, mediabus.MediaStats{Sent: 1, Received: 2}, a.Stats())

	// Feedback still goes through NATS, to every subscriber including A's own.
	fb := newMediaRecorder()
	_, err = a.SubscribeFeedback("r", "t", func(layer string, data []byte) { fb.fn(append([]byte(layer+":"), data...)) })
	require.NoError(t, err)
	require.NoError(t, a.Flush())
	require.NoError(t, a.SendFeedback("r", "t", "", []byte("pli")))
	// A keyframe request for one simulcast layer names it.
	require.NoError(t, a.SendFeedback("r", "t", "h", []byte("pli")))
	require.Equal(t, []string{":pli", "h:pli"}, fb.waitFor(t, 2))

	// Unsubscribing ends the local half too.
	require.NoError(t, subA.Unsubscribe())
	require.NoError(t, a.Sender("r", "t", "0").Send([]byte("after")))
	require.Equal(t, []string{"from a", "from remote", "after"}, atRemote.waitFor(t, 3)) // its own echoes

	require.Equal(t, []string{"from a", "from remote"}, atA.packets())
}

// The node's own packet to its own viewers allocates nothing: no NATS subscription is made for
// a track the node publishes, so the embedded server matches nothing (with a subscription it
// would make a 128-byte subject buffer per message in processMsgResults).
func TestLocalMediaBusSendDoesNotAllocate(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv, err := natsnode.StartServer(ctx, natsnode.ServerConfig{Name: "mediabus"})
	require.NoError(t, err)
	t.Cleanup(srv.Shutdown)
	fb, err := srv.Connect("fb")
	require.NoError(t, err)
	defer fb.Close()
	rtp, err := srv.Connect("rtp", nats.NoEcho())
	require.NoError(t, err)
	defer rtp.Close()
	bus, err := mediabus.NewLocalMediaBus(fb, rtp, srv.Interest)
	require.NoError(t, err)
	n := 0
	s := bus.Sender("r", "t", "0")
	_, err = bus.Subscribe("r", "t", "0", func([]byte) { n++ })
	require.NoError(t, err)
	require.Zero(t, rtp.NumSubscriptions(), "the node publishes the track: no NATS interest")
	pkt := make([]byte, 1200)
	allocs := testing.AllocsPerRun(1000, func() { _ = s.Send(pkt) })
	require.Zero(t, allocs)
	require.Equal(t, 1001, n)
}
