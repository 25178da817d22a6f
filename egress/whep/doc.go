// Package whep is WebRTC-HTTP egress (draft-ietf-wish-whep): POST /whep/{room} plays the room's
// current publisher, POST /whep/{room}/{peer} a chosen one; the session URL takes DELETE and
// PATCH (trickle ICE); the draft's layer extension (.../layer) and server-sent events
// (.../sse, "layers" events) hang off it. Viewers are fed by the node's forward.Hub: one subscription and one NACK
// cache per track per node, whatever the number of viewers.
//
// Core is the sans-IO session: the shared rtc.Lifecycle plus the viewer's subscriptions.
// Handler is the shell: the POST (the rest of the HTTP contract is rtc.Endpoint's), pion and
// the tracks' RTCP readers. It imports events, pipeline and egress/forward; what a room
// publishes comes through the Catalog interface (the KV projection, wired by cmd), not from
// ingress.
//
// Imports: egress/forward, events, pipeline/auth, pipeline/mediabus, pipeline/rtc
package whep
