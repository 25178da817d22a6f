package forward_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/pion/rtp"
	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/egress/forward"
	"github.com/jetmedia/jetmedia/pipeline/mediabus"
	"github.com/jetmedia/jetmedia/pipeline/natsnode"
)

type collector struct {
	mu   sync.Mutex
	pkts []rtp.Packet
}

func (c *collector) Write(b []byte) (int, error) {
	var p rtp.Packet
	if err := p.Unmarshal(append([]byte(nil), b...)); err != nil {
		return 0, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.pkts = append(c.pkts, p)
	return len(b), nil
}

func (c *collector) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.pkts)
}

func (c *collector) at(i int) rtp.Packet {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.pkts[i]
}

func (c *collector) last() rtp.Packet {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.pkts[len(c.pkts)-1]
}

func startBus(t *testing.T) (*mediabus.MediaBus, *nats.Conn) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv, err := natsnode.StartServer(ctx, natsnode.ServerConfig{Name: "hub-test", JetStream: true, StoreDir: t.TempDir()})
	require.NoError(t, err)
	t.Cleanup(srv.Shutdown)
	sub, err := srv.Connect("media-sub")
	require.NoError(t, err)
	t.Cleanup(sub.Close)
	pub, err := srv.Connect("media-pub")
	require.NoError(t, err)
	t.Cleanup(pub.Close)
	return mediabus.NewMediaBus(sub), pub
}

func TestHub(t *testing.T) {
	bus, pubConn := startBus(t)
	sender := mediabus.NewMediaBus(pubConn).Sender("r1", "t1", "0")
	hub := forward.NewHub(bus)

	a, b := &collector{}, &collector{}
	fa, detachA, err := hub.Attach("r1", "t1", forward.NewOutput(1, 96, a))
	require.NoError(t, err)
	fb, detachB, err := hub.Attach("r1", "t1", forward.NewOutput(2, 97, b))
	require.NoError(t, err)
	require.Same(t, fa, fb, "one fan-out per track")
	require.Equal(t, 1, hub.Tracks())
	require.NoError(t, bus.Flush())

	send := func(seq uint16) {
		p := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 111, SequenceNumber: seq, SSRC: 0x55}, Payload: []byte("m")}
		buf, err := p.Marshal()
		require.NoError(t, err)
		require.NoError(t, sender.Send(buf))
	}
	for seq := range uint16(10) {
		send(seq)
	}
	require.Eventually(t, func() bool { return a.len() == 10 && b.len() == 10 }, 5*time.Second, time.Millisecond)
	require.Equal(t, uint32(1), a.last().SSRC)
	require.Equal(t, uint32(2), b.last().SSRC)

	detachA()
	detachA() // idempotent: must not remove anything else
	require.Equal(t, 1, hub.Tracks())
	send(10)
	require.Eventually(t, func() bool { return b.len() == 11 }, 5*time.Second, time.Millisecond)
	require.Equal(t, 10, a.len())

	detachB()
	require.Zero(t, hub.Tracks(), "last viewer gone: unsubscribed")
	require.Equal(t, forward.Stats{Forwarded: 21, ForwardedBytes: 21 * 13}, hub.Stats(), "a removed fan-out's counters are kept")

	_, detachC, err := hub.Attach("r1", "t2", forward.NewOutput(3, 96, &collector{}))
	require.NoError(t, err)
	require.Equal(t, 1, hub.Tracks())
	hub.Close()
	require.Zero(t, hub.Tracks())
	detachC() // after Close: harmless
	_, _, err = hub.Attach("r1", "t1", forward.NewOutput(4, 96, &collector{}))
	require.ErrorIs(t, err, forward.ErrClosed)
}
