// Package whip is WebRTC-HTTP ingestion (RFC 9725): POST /whip/{room} publishes a stream into a
// room, the session URL accepts DELETE (stop) and PATCH (trickle ICE; an ICE restart is answered
// 422), OPTIONS advertises what is accepted.
//
// Core is the sans-IO session: the shared rtc.Lifecycle plus the tracks the publisher sends.
// Handler is the shell: the POST (the rest of the HTTP contract is rtc.Endpoint's), the pion
// PeerConnection, and the per-track goroutine that moves RTP onto the track's media subject
// (rtc.ReadRTP). It imports events and pipeline only.
//
// Imports: events, pipeline/auth, pipeline/mediabus, pipeline/rtc
package whip
