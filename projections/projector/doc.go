// Package projector runs a projection on one node of the system at a time: the holder of a
// lease in the projectors KV bucket (one key per projection) drives it, the other nodes stand
// by and take over when the holder stops renewing. Several nodes folding the same log into the
// same bucket with conditional writes keep it right but conflict on every write (after a
// stream leader's death the rooms bucket lagged the log by a minute); one writer does not.
//
// A lease is a compare-and-set on the key's revision. A standby ages the holder's record by
// its own clock, from when it saw the revision change, and takes the key over with a write
// conditional on that revision once it is older than the TTL (so machines whose clocks
// disagree never take a live holder's lease); the holder stops its projection before that can
// happen when it cannot renew (its fence, TTL × 3/4 after the last renewal it sent). A renewal
// refused for a stale revision is read back first: one that timed out but was stored left the
// lease with this process, which goes on leading. A node's next process takes its previous
// process's lease at once.
//
// It imports pipeline/eventlog (storage settings, retries of declarations); it must not import
// ingress, egress or cmd.
//
// Imports: pipeline/eventlog
package projector
