// Package sip is the SIP gateway: phones and PBXs call into a room at sip:<room>@DOMAIN over UDP
// or TCP, authenticated with digest credentials, and are peers like any other (transport
// "sip"): the room hears the caller as an Opus audio track, the caller hears a mix of the
// room's loudest speakers as G.711.
//
// Core is the sans-IO call: the shared rtc.Lifecycle plus the caller's track, DTMF key presses
// (RFC 4733, rate-limited) as dtmf.received events, hold, and the session timer (RFC 4028).
// Server is the shell: the SIP transaction layer (github.com/emiago/sipgo), digest
// authentication before anything is recorded, the SDP offer/answer, one RTP socket per call,
// G.711 (our own companders) and Opus (libopus, loaded at run time with
// github.com/ebitengine/purego, no cgo) and the mixer of the room's audio.
//
// It imports events and pipeline (mediabus, rtc) only; never egress, cmd or projections:
// what a room publishes comes through the Tracks seam the wiring fills in.
//
// Imports: events, pipeline/mediabus, pipeline/rtc
package sip
