package sip

import (
	"net"
	"strconv"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
)

// A fixed port taken for TCP is refused with the kernel's error; any port (":0") binds UDP and
// TCP on one port.
func TestBindPair(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer func() { _ = ln.Close() }()
	taken := ln.Addr().(*net.TCPAddr).Port

	s := &Server{cfg: Config{Listen: net.JoinHostPort("127.0.0.1", strconv.Itoa(taken))}}
	err = s.bindPair("127.0.0.1")
	require.ErrorIs(t, err, syscall.EADDRINUSE)

	for range 50 {
		s := &Server{cfg: Config{Listen: "127.0.0.1:0"}}
		require.NoError(t, s.bindPair("127.0.0.1"))
		require.Equal(t, s.port, s.tcp.Addr().(*net.TCPAddr).Port)
		_ = s.udp.Close()
		_ = s.tcp.Close()
	}
}
