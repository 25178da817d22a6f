// Package pipeline is the machinery every stage of jetmedia shares, one subpackage per concern,
// so the path says what a piece is:
//
//   - natsnode: the embedded nats-server in every topology (single node, cluster, leaf).
//   - eventlog: the JetStream event log: stream and bucket declarations, the appender (dedupe,
//     per-room optimistic concurrency, hash chain), readers, the watermill router and its
//     JetStream subscriber, the poison stream.
//   - mediabus: the core-NATS media plane: each track's RTP and feedback on subjects, data
//     messages.
//   - rtc: the WebRTC edge (pion API, the shared UDP port and its batched sends, the session
//     model every WebRTC transport composes). It does not touch NATS.
//   - audiolevel: the sans-IO audio-level machinery: the RFC 6464 header extension read from
//     raw RTP, a per-track speech meter and a per-room speaker ranking. No I/O, no clock.
//   - pacer: the sans-IO pacing of what the node sends one viewer connection (a leaky bucket
//     at a factor of its bandwidth estimate, a bounded queue); rtc runs it.
//   - auth: access tokens (JWT) and grants. It does not touch NATS or WebRTC.
//   - stagetime: lock-free timings of the forward path's stages (ingest, fan-out, send queue,
//     system call) on a live node, read by the metrics.
//
// The root package holds no code. Subpackages may import events and each other as the Imports
// line of their doc.go says; never projections, ingress, egress or cmd (tests/contracts checks).
//
// Imports: none
package pipeline
