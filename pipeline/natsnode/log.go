package natsnode

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
)

// at logs a nats-server warning or error at the level natsLevel gives it.
func (l *natsLogger) at(level slog.Level, format string, v []any) {
	msg := fmt.Sprintf(format, v...)
	l.log.Log(context.Background(), natsLevel(level, msg), msg)
}

// natsLevel is the level of a nats-server warning or error, from its message (formatted:
// nats-server's rate-limited lines come as "%s"). nats-server warns about the routine of a
// cluster's life too, which an embedded server's operator would read as trouble: a cluster
// forming at start-up (routing not yet established, no meta leader yet: Info, still shown
// once each, as nats-server rate-limits them), the meta layer's periodic snapshot, and the
// deprecation of default_js_domain, which jetmedia sets for its leaf nodes (not the
// operator's to fix: DESIGN.md section 5). A route, gateway or leaf connection that cannot
// be dialled is logged as an error on the first attempt and every ConnectErrorReports
// after: a peer not up yet in a rolling start, or down; a warning, not an error of this
// node. Everything else keeps its level.
func natsLevel(level slog.Level, msg string) slog.Level {
	switch {
	case strings.HasPrefix(msg, "Waiting for routing to be established"),
		strings.HasPrefix(msg, "JetStream has not established contact with a meta leader"):
		return slog.LevelInfo
	case strings.HasPrefix(msg, "Metalayer blocking snapshot"),
		strings.Contains(msg, "`default_js_domain` is a temporary backwards compatibility measure"):
		return slog.LevelDebug
	case level >= slog.LevelError && (strings.HasPrefix(msg, "Error trying to connect ") ||
		strings.HasPrefix(msg, "Error connecting to ")):
		return slog.LevelWarn
	}
	return level
}
