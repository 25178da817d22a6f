// Package egress holds what delivers media and events out of jetmedia. Its subpackages:
// forward (the per-node track fan-out with the RTP rewriter and the shared NACK cache), webhook
// (delivery of the event log to HTTP endpoints) and
// whep (WebRTC-HTTP egress). They import events and pipeline, never ingress.
//
// Imports: none
package egress
