// Package webhook delivers the event log to HTTP endpoints: one durable JetStream consumer on
// EVENTS per endpoint, events POSTed as their stored JSON bytes with Standard Webhooks headers
// (id, timestamp, HMAC-SHA256 signature), in order per room, at least once, retried with
// exponential backoff and jitter, and parked in the WEBHOOKS_PARKED stream after the last
// attempt, from where Redrive sends them again. A per-endpoint circuit breaker (breaker.go)
// holds every lane while the receiver is down, so an outage parks nothing. It imports the
// event log (pipeline/eventlog), never ingress or other egress packages. See docs/webhooks.md.
//
// Imports: pipeline/eventlog
package webhook
