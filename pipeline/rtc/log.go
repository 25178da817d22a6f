package rtc

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"github.com/pion/logging"
)

// logFactory routes pion's leveled loggers to slog, at the levels an operator of a node
// wants (pionLevel).
type logFactory struct{ log *slog.Logger }

func (f logFactory) NewLogger(scope string) logging.LeveledLogger {
	return pionLogger{log: f.log.With("scope", scope)}
}

type pionLogger struct{ log *slog.Logger }

// pionLevel is the level a pion line is logged at, from pion's level and its message (the
// format, for the formatted calls: cheaper, and the same for every session).
//
// pion logs per peer connection, and nearly all of its warnings are the routine life of
// one: a peer that leaves mid-handshake ("Failed to start manager: connecting canceled"),
// streams closed under a reader at the end ("Failed to accept RTP stream is already
// closed", "Failed to read from candidate ...: closed pipe"), pings before the remote
// candidates are known, RTCP for SSRCs not negotiated, a remote's mDNS or malformed
// candidates, a stray or forged STUN packet. A node that served 300 sessions that never
// connected wrote 1,466 such warnings (and a remote peer can make more at will), while the
// session's own start and end lines already say what became of it. So pion's warnings are
// Debug but for nodeWarnings, which are about the node (its interfaces and sockets), not a
// peer; its errors stay errors but for routineErrors, the ends of peers that went away.
// pion's Info is chatty per session: Debug.
func pionLevel(level slog.Level, msg string) slog.Level {
	switch {
	case level < slog.LevelWarn:
		return slog.LevelDebug
	case level < slog.LevelError:
		if hasAnyPrefix(msg, nodeWarnings) {
			return slog.LevelWarn
		}
		return slog.LevelDebug
	case containsAny(msg, routineErrors):
		return slog.LevelDebug
	}
	return level
}

// nodeWarnings begin the pion warnings about the node itself: its interfaces, sockets and
// mDNS, which an operator can act on.
var nodeWarnings = []string{
	"Failed to listen",
	"Failed to iterate local interfaces",
	"Failed to get local interfaces",
	"Failed to get initial interfaces",
	"Failed to update interfaces",
	"Failed to initialize mDNS",
	"Failed to get port of UDPAddr",
	"Virtual network",
}

// routineErrors are in the pion errors that end a peer that went away or sent garbage:
// SCTP gives up retransmitting to it, its DTLS handshake was cancelled by the session's
// close, a response or candidate of an old pair or ICE generation, an invalid chunk, a
// packet that arrived for a connection the session's end had just closed (the UDP mux's
// "Failed to write packet: io: read/write on closed pipe", logged by nodes in the churn soak).
// An error's arguments are matched too (they carry the cause).
var routineErrors = []string{
	"retransmission failure",
	"handshake canceled",
	"Success response from invalid candidate pair",
	"doesn't match the current ufrags",
	"failed validating chunk",
	"read/write on closed pipe",
}

func hasAnyPrefix(s string, prefixes []string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

func containsAny(s string, parts []string) bool {
	for _, p := range parts {
		if strings.Contains(s, p) {
			return true
		}
	}
	return false
}

func (l pionLogger) logf(level slog.Level, format string, args ...any) {
	if level >= slog.LevelError {
		// Errors are rare: classify them by the whole line, cause included.
		l.msg(level, fmt.Sprintf(format, args...))
		return
	}
	level = pionLevel(level, format)
	if l.log.Enabled(context.Background(), level) {
		l.log.Log(context.Background(), level, fmt.Sprintf(format, args...))
	}
}

func (l pionLogger) Trace(msg string)                  {}
func (l pionLogger) Tracef(format string, args ...any) {}
func (l pionLogger) Debug(msg string)                  { l.logf(slog.LevelDebug, "%s", msg) }
func (l pionLogger) Debugf(format string, args ...any) { l.logf(slog.LevelDebug, format, args...) }
func (l pionLogger) Info(msg string)                   { l.logf(slog.LevelDebug, "%s", msg) }
func (l pionLogger) Infof(format string, args ...any)  { l.logf(slog.LevelDebug, format, args...) }
func (l pionLogger) Warn(msg string)                   { l.msg(slog.LevelWarn, msg) }
func (l pionLogger) Warnf(format string, args ...any)  { l.logf(slog.LevelWarn, format, args...) }
func (l pionLogger) Error(msg string)                  { l.msg(slog.LevelError, msg) }
func (l pionLogger) Errorf(format string, args ...any) { l.logf(slog.LevelError, format, args...) }

// msg logs an unformatted line, classified by itself.
func (l pionLogger) msg(level slog.Level, msg string) {
	level = pionLevel(level, msg)
	if l.log.Enabled(context.Background(), level) {
		l.log.Log(context.Background(), level, msg)
	}
}
