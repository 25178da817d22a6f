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
// It may import pion, the standard library and the Go room SDK (ingress/signal/client, a client
// itself), never the server's packages: it is a client like any other, which is why it lives
// under tests/ beside the end-to-end tests rather than in cmd/.
package loadgen
