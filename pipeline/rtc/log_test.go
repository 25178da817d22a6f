package rtc

import (
	"bytes"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// pion's routine per-peer warnings go to Debug, its warnings about the node and its real
// errors stay visible; the lines are the ones a node logged for sessions that ended or never
// connected.
func TestPionLevels(t *testing.T) {
	for _, tc := range []struct {
		level slog.Level
		msg   string
		want  slog.Level
	}{
		{slog.LevelWarn, "Failed to ping without candidate pairs. Connection is not possible yet.", slog.LevelDebug},
		{slog.LevelWarn, "Failed to accept RTP stream is already closed", slog.LevelDebug},
		{slog.LevelWarn, "Failed to read from candidate %s: %v", slog.LevelDebug},
		{slog.LevelWarn, "Failed to start manager: %s", slog.LevelDebug},
		{slog.LevelWarn, "undeclaredMediaProcessor failed to open SrtpSession: %v", slog.LevelDebug},
		{slog.LevelWarn, "Incoming unhandled RTCP ssrc(%d), OnTrack will not be fired", slog.LevelDebug},
		{slog.LevelWarn, "Failed to discover mDNS candidate %s: %v", slog.LevelDebug},
		{slog.LevelWarn, "Failed to handle decode ICE from %s: %v", slog.LevelDebug},
		{slog.LevelWarn, "UDPMuxDefault should not listening on unspecified address, use NewMultiUDPMuxFromPort instead", slog.LevelDebug},
		{slog.LevelWarn, "Failed to iterate local interfaces, host candidates will not be gathered %s", slog.LevelWarn},
		{slog.LevelWarn, "Failed to listen %s: %v", slog.LevelWarn},
		{slog.LevelError, "Failed to read UDP packet: %v", slog.LevelError},
		{slog.LevelError, "[%s] retransmission failure: T3-rtx (DATA)", slog.LevelDebug},
		{slog.LevelError, "[%s] client handshake canceled: state=%s", slog.LevelDebug},
		{slog.LevelInfo, "Setting new connection state: Checking", slog.LevelDebug},
		{slog.LevelError, "Failed to write packet: io: read/write on closed pipe", slog.LevelDebug},
		{slog.LevelError, "io: read/write on closed pipe", slog.LevelDebug},
	} {
		require.Equal(t, tc.want, pionLevel(tc.level, tc.msg), "%s %q", tc.level, tc.msg)
	}
}

func TestPionLoggerWritesAtItsLevel(t *testing.T) {
	var buf bytes.Buffer
	log := logFactory{log: slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo}))}.NewLogger("ice")
	log.Warnf("Failed to ping without candidate pairs. Connection is not possible yet.")
	log.Warn("Failed to accept RTCP stream is already closed")
	log.Infof("ICE connection state changed: %s", "checking")
	log.Errorf("Failed to write packet: %v", io.ErrClosedPipe) // a session's end under the UDP mux
	require.Empty(t, buf.String(), "routine lines are below Info")
	log.Errorf("Failed to read UDP packet: %v", "boom")
	log.Warnf("Failed to listen %s: %v", "udp4", "address in use")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	require.Len(t, lines, 2)
	require.Contains(t, lines[0], `level=ERROR msg="Failed to read UDP packet: boom" scope=ice`)
	require.Contains(t, lines[1], `level=WARN msg="Failed to listen udp4: address in use"`)
}
