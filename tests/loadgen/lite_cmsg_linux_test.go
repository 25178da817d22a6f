//go:build linux

package loadgen

import (
	"net"
	"net/netip"
	"strconv"
	"testing"
	"time"
	"unsafe"

	"github.com/stretchr/testify/require"
	"golang.org/x/net/ipv4"
)

// TestParseCmsgs reads the destination address and the kernel's arrival time of datagrams
// sent to one socket at two loopback addresses, as a lite socket tells its viewers apart
// and times their packets.
func TestParseCmsgs(t *testing.T) {
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4zero})
	require.NoError(t, err)
	defer conn.Close()
	pc := ipv4.NewPacketConn(conn)
	require.NoError(t, pc.SetControlMessage(ipv4.FlagDst, true))
	require.NoError(t, stampArrivals(conn))
	port := conn.LocalAddr().(*net.UDPAddr).Port
	for _, dst := range []string{"127.0.0.2", "127.0.3.9"} {
		c, err := net.Dial("udp4", net.JoinHostPort(dst, strconv.Itoa(port)))
		require.NoError(t, err)
		before := time.Now()
		_, err = c.Write([]byte("x"))
		require.NoError(t, err)
		c.Close()
		msgs := []ipv4.Message{{Buffers: [][]byte{make([]byte, 100)}, OOB: make([]byte, 128)}}
		require.NoError(t, conn.SetReadDeadline(time.Now().Add(2*time.Second)))
		n, err := pc.ReadBatch(msgs, 0)
		require.NoError(t, err)
		require.Equal(t, 1, n)
		read := time.Now()
		got, arrived, ok := parseCmsgs(msgs[0].OOB[:msgs[0].NN])
		require.True(t, ok)
		require.Equal(t, netip.MustParseAddr(dst), got)
		// The realtime clock, between the send and the read.
		require.GreaterOrEqual(t, arrived, before.UnixNano())
		require.LessOrEqual(t, arrived, read.UnixNano())
		require.Zero(t, testing.AllocsPerRun(100, func() { parseCmsgs(msgs[0].OOB[:msgs[0].NN]) }))
	}
	_, arrived, ok := parseCmsgs(nil)
	require.False(t, ok)
	require.Zero(t, arrived)
	_, _, ok = parseCmsgs(make([]byte, 10))
	require.False(t, ok)
}

// FuzzParseCmsgs: control messages of any content and length are read without a panic.
func FuzzParseCmsgs(f *testing.F) {
	good := (&ipv4.ControlMessage{Src: net.IPv4(127, 0, 0, 9)}).Marshal()
	f.Add(good)
	f.Add(append(append([]byte{}, good...), good...))
	f.Add([]byte{255, 255, 255, 255, 255, 255, 255, 255, 0, 0, 0, 0, 8, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		// Aligned, as the socket's own buffers are.
		words := make([]uint64, (len(b)+7)/8)
		oob := unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(words))), len(words)*8)[:len(b)]
		copy(oob, b)
		parseCmsgs(oob)
	})
}
