// Package loadgen is the engine of `jetmedia load`: synthetic WHIP publishers and WHEP
// subscribers, or rooms of Go SDK peers publishing and subscribing (rooms.go), that drive a
// running server through its public URL only, and the accounting that turns what they saw
// into a report (packets, loss, end-to-end latency, join time, server CPU and memory).
//
// Payloads carry their send time and a per-track sequence number (see probe.go), so the tool
// measures latency and loss itself, on one machine, without a real encoder or decoder. The
// accounting (histograms, percentiles, loss, pacing, /proc and metrics parsing) is pure functions; the
// pion clients and the run loop around them are the thin I/O shell.
//
// Its WHIP publishers and WHEP subscribers are tests/rtcclient sessions, the client the
// end-to-end tests use; only the media they send and the accounting of what arrives are the
// load tool's. The lite viewers (lite*.go) are not PeerConnections: pion's protocol libraries
// on shared sockets, a few µs of CPU a packet.
//
// It may import pion, the standard library, tests/rtcclient and the Go room SDK
// (ingress/signal/client, a client itself), never the server's packages: it is a client like
// any other, which is why it lives under tests/ beside the end-to-end tests rather than in
// cmd/.
package loadgen
