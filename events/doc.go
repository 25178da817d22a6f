// Package events owns jetmedia's domain events: the envelope every event travels in (id, type
// with version, room, actor, node, time, causation), the typed payloads, their JSON encoding and
// the registry that maps a wire type such as "peer.joined.v1" to its payload.
//
// It imports the standard library only. Everything that stores, routes or folds events
// (pipeline, projections, ingress, egress) depends on this package, never the other way round.
//
// Imports: none
package events
