// Package whip is WebRTC-HTTP ingestion (RFC 9725): POST /whip/{room} publishes a stream into a
// room, the session URL accepts DELETE (stop) and PATCH (trickle ICE, answered 405/422 until
// supported), OPTIONS advertises what is accepted.
//
// Core is the sans-IO session: inputs and now in, events and actions out, no goroutines or
// sockets. Handler is the shell: HTTP, the pion PeerConnection, and the goroutines that move RTP
// from the PeerConnection onto the track's media subject. It imports events and pipeline only.
//
// Imports: events, pipeline/auth, pipeline/mediabus, pipeline/rtc
package whip
