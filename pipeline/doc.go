// Package pipeline owns everything NATS in jetmedia: the embedded nats-server (single node, or
// joined to other nodes by gateways), the JetStream stream and KV declarations, the event
// appender (dedupe and per-room optimistic concurrency), the media bus that carries each track's
// RTP on a core NATS subject, and the watermill router that runs event consumers.
//
// It may import events and third-party NATS/watermill code; it must not import projections,
// ingress, egress or cmd.
package pipeline
