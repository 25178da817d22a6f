// Package eventlog is the JetStream event log: the EVENTS stream and rooms bucket declarations,
// the appender (dedupe by event id, per-room optimistic concurrency, the hash chain), readers and
// followers, the batch consumer that hands a durable's events over in batches (the rooms
// projection's feed), the watermill router with its JetStream subscriber, and the poison stream where
// consumers park events they cannot handle.
//
// It may import events, nats.go and watermill; nothing else of jetmedia (tests may use natsnode).
//
// Imports: events
package eventlog
