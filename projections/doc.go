// Package projections owns jetmedia's read models: pure folds (state, event) → state, and the
// runners that feed them from durable JetStream consumers into KV buckets, with checkpoints.
//
// The room fold (Fold) is the single definition of what a room is; the KV runner, the rebuild
// command and `jetmedia replay` all use it, which is why a rebuilt bucket equals the live one.
// Room snapshots (snapshot.go, snapshotstore.go) are a room's fold at a log sequence, bound to
// the log by the room's chain head there: replays and a cold projection fold the nearest one
// plus the events after it.
//
// It imports events and the event log (pipeline/eventlog); it must not import ingress, egress
// or cmd. Its subpackages serve its models over HTTP and hold the log commands' work.
//
// Imports: events, pipeline/eventlog
package projections
